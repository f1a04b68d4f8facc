//! Gatehouse's own CA for the webhook, the serving certificates it
//! issues, and when the Secret that holds them needs new ones: functions
//! of the Secret's data, the Service's names and the time, with no I/O.
//!
//! The Secret holds `ca.crt` and `ca.key` (the CA, ECDSA P-256, valid
//! `AUTHORITY_LIFETIME`) and `tls.crt` and `tls.key` (the serving
//! certificate it signed for the Service's DNS names, valid
//! `SERVING_LIFETIME`). The serving certificate is issued again, by the
//! same CA, when a third of its lifetime remains, when its names are not
//! exactly the Service's, or when it does not verify against the CA; the
//! CA is made anew only when it is missing or unusable, or when it would
//! expire before a serving certificate issued now.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::cluster::ObjectKey;
use crate::issuing::manager::Held;
use crate::tls::certified_key_from_der;

const DAY: u64 = 24 * 60 * 60;
/// How long a CA made here is valid.
pub const AUTHORITY_LIFETIME: Duration = Duration::from_secs(10 * 365 * DAY);
/// How long a serving certificate issued here is valid.
pub const SERVING_LIFETIME: Duration = Duration::from_secs(365 * DAY);
/// Both start this long before they are made, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// The Secret's keys.
pub const CA_CERTIFICATE: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const CERTIFICATE: &str = "tls.crt";
pub const KEY: &str = "tls.key";

/// The CA's subject: the serving certificates name it as their issuer.
const AUTHORITY_NAME: &str = "Gatehouse admission CA";

/// A Secret's data.
pub type Data = BTreeMap<String, ByteString>;

/// The names the API server asks for when it calls the Service
/// `service` (`clientConfig.service`): `NAME.NAMESPACE.svc`, and the
/// fully qualified name under the default cluster domain.
pub fn service_names(service: &ObjectKey) -> Vec<String> {
    let svc = format!("{}.{}.svc", service.name, service.namespace);
    vec![svc.clone(), format!("{svc}.cluster.local")]
}

/// What the Secret's data needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Nothing until `due`.
    Current { due: SystemTime },
    /// A serving certificate from the CA held, for this reason.
    Serving(String),
    /// A new CA and a serving certificate from it, for this reason.
    Authority(String),
}

/// What `data` needs for a serving certificate of exactly `names`, now.
pub fn renewal(data: &Data, names: &[String], now: SystemTime) -> Renewal {
    let authority = match Authority::read(data) {
        Ok(authority) => authority,
        Err(why) => return Renewal::Authority(why),
    };
    let replace_authority = authority.not_after.checked_sub(SERVING_LIFETIME);
    let Some(replace_authority) = replace_authority.filter(|at| *at > now) else {
        let until = httpdate::fmt_http_date(authority.not_after);
        return Renewal::Authority(format!(
            "the CA expires {until}, before a serving certificate issued now would"
        ));
    };
    match authority.serving_due(data, names, now) {
        Ok(due) if due > now => Renewal::Current {
            due: due.min(replace_authority),
        },
        Ok(_) => Renewal::Serving(
            "the serving certificate has less than a third of its lifetime left".to_owned(),
        ),
        Err(why) => Renewal::Serving(why),
    }
}

/// Why no serving certificate could be made.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the serving certificate made does not verify against its CA: {0}")]
    Unverified(String),
}

/// What the Secret's data must become.
#[derive(Debug)]
pub enum Upkeep {
    /// It is current: nothing to write until `due`.
    Current { due: SystemTime },
    /// Write this data, for this reason.
    Write { data: Data, why: String },
}

/// What `data` must become to hold a serving certificate of exactly
/// `names` now, issued by the CA it holds when that CA is usable.
pub fn upkeep(data: &Data, names: &[String], now: SystemTime) -> Result<Upkeep, IssueError> {
    let why = match renewal(data, names, now) {
        Renewal::Current { due } => return Ok(Upkeep::Current { due }),
        Renewal::Serving(why) => match Authority::read(data).map(|a| a.data(names, now)) {
            Ok(Ok(data)) => return Ok(Upkeep::Write { data, why }),
            Ok(Err(IssueError::Unverified(unverified))) => format!("{why}; {unverified}"),
            Ok(Err(error)) => return Err(error),
            Err(unusable) => unusable,
        },
        Renewal::Authority(why) => why,
    };
    let data = Authority::generate(now)?.data(names, now)?;
    let why = format!("{why} (a new CA)");
    Ok(Upkeep::Write { data, why })
}

/// The certificates of a PEM bundle (a `caBundle`) still valid at `now`,
/// as PEM, each as it was written; those that do not parse are left out.
pub fn unexpired_certificates(bundle: &[u8], now: SystemTime) -> Vec<u8> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(bundle);
    let mut kept = Vec::new();
    for block in text.split_inclusive(END).filter(|b| b.ends_with(END)) {
        let Some(start) = block.find("-----BEGIN CERTIFICATE-----") else {
            continue;
        };
        let pem = &block[start..];
        if Held::of_pem(pem.as_bytes()).is_some_and(|held| held.not_after > now) {
            kept.extend_from_slice(pem.as_bytes());
            kept.push(b'\n');
        }
    }
    kept
}

/// A CA and its key, from the Secret or made here.
struct Authority {
    pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
    not_after: SystemTime,
}

impl Authority {
    fn generate(now: SystemTime) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = authority_params();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + AUTHORITY_LIFETIME).into();
        let certificate = params.self_signed(&key)?;
        Ok(Authority {
            pem: certificate.pem(),
            der: certificate.der().clone(),
            key,
            not_after: now + AUTHORITY_LIFETIME,
        })
    }

    /// The CA of `data`, when it is one whose key it holds.
    fn read(data: &Data) -> Result<Self, String> {
        let pem = text(data, CA_CERTIFICATE)?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("{CA_CERTIFICATE} holds no PEM certificate: {e}"))?;
        let key = KeyPair::from_pem(text(data, CA_KEY)?)
            .map_err(|e| format!("{CA_KEY} holds no usable private key: {e}"))?;
        let (_, certificate) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("{CA_CERTIFICATE} does not parse: {e}"))?;
        let is_ca = certificate.basic_constraints().ok().flatten();
        if !is_ca.is_some_and(|constraints| constraints.value.ca) {
            return Err(format!("{CA_CERTIFICATE} is not a CA certificate"));
        }
        if certificate.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(format!("{CA_KEY} is not the key of {CA_CERTIFICATE}"));
        }
        let not_after = certificate.validity().not_after.timestamp().max(0) as u64;
        Ok(Authority {
            pem: pem.to_owned(),
            der: der.clone(),
            key,
            not_after: UNIX_EPOCH + Duration::from_secs(not_after),
        })
    }

    /// A serving certificate for `names`, and its key, in PEM.
    fn issue(&self, names: &[String], now: SystemTime) -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + SERVING_LIFETIME).into();
        let issuer = Issuer::new(authority_params(), &self.key);
        let certificate = params.signed_by(&key, &issuer)?;
        Ok((certificate.pem(), key.serialize_pem()))
    }

    /// The whole Secret's data: this CA and a serving certificate it
    /// issues for `names`, checked to verify against it.
    fn data(&self, names: &[String], now: SystemTime) -> Result<Data, IssueError> {
        let (certificate, key) = self.issue(names, now)?;
        let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
        let data = Data::from([
            (CA_CERTIFICATE.to_owned(), bytes(&self.pem)),
            (CA_KEY.to_owned(), bytes(&self.key.serialize_pem())),
            (CERTIFICATE.to_owned(), bytes(&certificate)),
            (KEY.to_owned(), bytes(&key)),
        ]);
        self.serving_due(&data, names, now)
            .map_err(IssueError::Unverified)?;
        Ok(data)
    }

    /// When the serving certificate of `data` falls due (a third of its
    /// lifetime before it ends), or why it must be issued now.
    fn serving_due(
        &self,
        data: &Data,
        names: &[String],
        now: SystemTime,
    ) -> Result<SystemTime, String> {
        let (certificate, key) = (text(data, CERTIFICATE)?, text(data, KEY)?);
        let chain = CertificateDer::pem_slice_iter(certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{CERTIFICATE} is not valid PEM: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|e| format!("{KEY} holds no usable private key: {e}"))?;
        let leaf = chain
            .first()
            .cloned()
            .ok_or(format!("{CERTIFICATE} holds no certificate"))?;
        certified_key_from_der(chain, key).map_err(|e| e.to_string())?;
        let held = Held::of_pem(certificate.as_bytes())
            .ok_or_else(|| format!("{CERTIFICATE} does not parse"))?;
        let (mut have, mut want) = (held.names.clone(), names.to_vec());
        have.sort();
        want.sort();
        if have != want {
            return Err(format!(
                "the serving certificate names {}, not {}",
                have.join(", "),
                want.join(", ")
            ));
        }
        self.verify(&leaf, names, now)?;
        let lifetime = held
            .not_after
            .duration_since(held.not_before)
            .unwrap_or_default();
        Ok(held.not_after - lifetime / 3)
    }

    /// Whether a client that trusts this CA alone accepts `leaf` for each
    /// of `names` at `now`, as the API server will.
    fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        names: &[String],
        now: SystemTime,
    ) -> Result<(), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.der.clone())
            .map_err(|e| format!("{CA_CERTIFICATE}: {e}"))?;
        let provider = crate::tls::provider().clone();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{CA_CERTIFICATE}: {e}"))?;
        let time = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        for name in names {
            let server = ServerName::try_from(name.as_str()).map_err(|e| format!("{name}: {e}"))?;
            verifier
                .verify_server_cert(leaf, &[], &server, &[], time)
                .map_err(|e| format!("the serving certificate does not verify for {name}: {e}"))?;
        }
        Ok(())
    }
}

/// What the CA's certificate says of itself; the serving certificates
/// name its subject as their issuer.
fn authority_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, AUTHORITY_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A key of `data` as text, present and not empty.
fn text<'a>(data: &'a Data, name: &str) -> Result<&'a str, String> {
    let bytes = data
        .get(name)
        .map(|b| b.0.as_slice())
        .filter(|b| !b.is_empty());
    let bytes = bytes.ok_or_else(|| format!("{name} is missing"))?;
    std::str::from_utf8(bytes).map_err(|_| format!("{name} is not PEM text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        service_names(&ObjectKey::new("gatehouse", "gatehouse-admission"))
    }

    fn written(upkeep: Upkeep) -> (Data, String) {
        match upkeep {
            Upkeep::Write { data, why } => (data, why),
            other => panic!("nothing written: {other:?}"),
        }
    }

    /// A Secret's data as first written at `now`.
    fn first(now: SystemTime) -> Data {
        written(upkeep(&Data::new(), &names(), now).unwrap()).0
    }

    fn day(n: u64) -> Duration {
        Duration::from_secs(n * DAY)
    }

    #[test]
    fn a_bundle_keeps_its_certificates_until_they_expire_and_drops_what_does_not_parse() {
        let now = SystemTime::now();
        let ca = |data: &Data| data[CA_CERTIFICATE].0.clone();
        let (early, late) = (ca(&first(now - day(3649))), ca(&first(now)));
        let garbage = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        let bundle = [early.clone(), garbage.to_vec(), late.clone()].concat();
        let kept = unexpired_certificates(&bundle, now);
        let text = String::from_utf8(kept.clone()).unwrap();
        assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2, "{text}");
        let two_days_on = unexpired_certificates(&bundle, now + day(2));
        assert_eq!(
            two_days_on, late,
            "the early CA expired; the late one as written"
        );
        assert!(unexpired_certificates(b"", now).is_empty());
    }

    #[test]
    fn the_service_names_are_its_svc_names() {
        assert_eq!(
            names(),
            [
                "gatehouse-admission.gatehouse.svc",
                "gatehouse-admission.gatehouse.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn an_empty_secret_gets_a_ca_and_a_serving_certificate_due_at_two_thirds_of_its_life() {
        let now = SystemTime::now();
        let (data, why) = written(upkeep(&Data::new(), &names(), now).unwrap());
        assert!(why.contains("ca.crt is missing"), "{why}");
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
        let Renewal::Current { due } = renewal(&data, &names(), now) else {
            panic!("not current: {:?}", renewal(&data, &names(), now));
        };
        // Backdated an hour: due two thirds of the year after that.
        let expected = now - BACKDATE + (SERVING_LIFETIME + BACKDATE) * 2 / 3;
        let off = due
            .duration_since(expected)
            .unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(5), "{off:?}");
        assert!(matches!(
            upkeep(&data, &names(), now).unwrap(),
            Upkeep::Current { .. }
        ));
    }

    #[test]
    fn a_serving_certificate_with_a_third_of_its_life_left_is_issued_again_by_the_same_ca() {
        let now = SystemTime::now();
        let data = first(now);
        let later = now + day(250);
        assert!(matches!(
            renewal(&data, &names(), later),
            Renewal::Serving(why) if why.contains("third")
        ));
        let (renewed, _) = written(upkeep(&data, &names(), later).unwrap());
        assert_eq!(renewed["ca.crt"], data["ca.crt"]);
        assert_eq!(renewed["ca.key"], data["ca.key"]);
        assert_ne!(renewed["tls.crt"], data["tls.crt"]);
        assert_ne!(renewed["tls.key"], data["tls.key"]);
        assert!(matches!(
            renewal(&renewed, &names(), later),
            Renewal::Current { .. }
        ));
    }

    #[test]
    fn a_serving_certificate_for_other_names_is_issued_again_by_the_same_ca() {
        let now = SystemTime::now();
        let data = first(now);
        let moved = service_names(&ObjectKey::new("ingress", "gatehouse-admission"));
        let Renewal::Serving(why) = renewal(&data, &moved, now) else {
            panic!("not renewed for other names");
        };
        assert!(why.contains("ingress.svc"), "{why}");
        let (renewed, _) = written(upkeep(&data, &moved, now).unwrap());
        assert_eq!(renewed["ca.crt"], data["ca.crt"]);
        let held = Held::of_pem(&renewed["tls.crt"].0).unwrap();
        assert_eq!(held.names.len(), 2);
        assert!(held.names.iter().all(|n| moved.contains(n)));
    }

    #[test]
    fn a_broken_or_foreign_serving_pair_is_issued_again_by_the_same_ca() {
        let now = SystemTime::now();
        let data = first(now);
        let other = first(now);
        let cases: [(&str, Data); 3] = [
            ("tls.crt", {
                let mut d = data.clone();
                d.insert("tls.crt".into(), ByteString(b"garbage".to_vec()));
                d
            }),
            ("does not match", {
                let mut d = data.clone();
                d.insert("tls.key".into(), other["tls.key"].clone());
                d
            }),
            ("does not verify", {
                // A pair of another CA's.
                let mut d = data.clone();
                d.insert("tls.crt".into(), other["tls.crt"].clone());
                d.insert("tls.key".into(), other["tls.key"].clone());
                d
            }),
        ];
        for (reason, broken) in cases {
            let Renewal::Serving(why) = renewal(&broken, &names(), now) else {
                panic!("{reason}: {:?}", renewal(&broken, &names(), now));
            };
            assert!(why.contains(reason), "{reason}: {why}");
            let (renewed, _) = written(upkeep(&broken, &names(), now).unwrap());
            assert_eq!(renewed["ca.crt"], data["ca.crt"], "{reason}");
        }
    }

    #[test]
    fn an_unusable_or_expiring_ca_is_made_anew() {
        let now = SystemTime::now();
        let data = first(now);
        let other = first(now);
        let mut mismatched = data.clone();
        mismatched.insert("ca.key".into(), other["ca.key"].clone());
        let mut not_a_ca = data.clone();
        not_a_ca.insert("ca.crt".into(), data["tls.crt"].clone());
        for (reason, broken, at) in [
            ("is not the key", mismatched, now),
            ("not a CA", not_a_ca, now),
            ("expires", data.clone(), now + AUTHORITY_LIFETIME - day(300)),
        ] {
            let Renewal::Authority(why) = renewal(&broken, &names(), at) else {
                panic!("{reason}: {:?}", renewal(&broken, &names(), at));
            };
            assert!(why.contains(reason), "{reason}: {why}");
            let (renewed, why) = written(upkeep(&broken, &names(), at).unwrap());
            assert!(why.contains("new CA"), "{why}");
            assert_ne!(renewed["ca.crt"], data["ca.crt"], "{reason}");
            assert!(matches!(
                renewal(&renewed, &names(), at),
                Renewal::Current { .. }
            ));
        }
    }
}
