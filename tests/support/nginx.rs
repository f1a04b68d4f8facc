//! A real nginx beside Gatehouse, for the tests that compare the two on
//! the same requests. Tests that need it say they are skipped when the
//! binary (Debian's `nginx-light`) or a module they load is absent.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A running nginx, stopped when dropped, with its prefix directory.
pub struct Nginx {
    child: std::process::Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary, where Debian and source builds put it.
pub fn binary() -> Option<String> {
    [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .map(str::to_owned)
}

/// A dynamic module's file (`ngx_http_headers_more_filter_module.so`,
/// from `libnginx-mod-http-headers-more-filter`), where Debian puts it.
pub fn module(file: &str) -> Option<String> {
    ["/usr/lib/nginx/modules", "/usr/local/nginx/modules"]
        .into_iter()
        .map(|dir| format!("{dir}/{file}"))
        .find(|p| Path::new(p).exists())
}

impl Nginx {
    /// nginx in the foreground on a free port of 127.0.0.1; `top` goes
    /// before the `events` block (`load_module`), `http` inside the
    /// `http` block, each with `{port}` and `{prefix}` filled in.
    pub fn start(binary: &str, top: &str, http: &str) -> Option<Nginx> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
            .to_string();
        let prefix = dir.path().display().to_string();
        let fill = |text: &str| text.replace("{port}", &port).replace("{prefix}", &prefix);
        let config = format!(
            "{top}
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{}}
http {{
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
{http}
}}
",
            top = fill(top),
            http = fill(http),
        );
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config).expect("write nginx.conf");
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().ok()?));
        let nginx = Nginx { child, addr, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Some(nginx);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// What nginx wrote to its error log, for a failure's message.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}
