//! A real S3-compatible server for tests (`.ci/run` starts moto and exports its address).
use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};

pub const ACCESS_KEY: &str = "vitrina-test";
pub const SECRET_KEY: &str = "vitrina-test-secret";
/// Not us-east-1: rust-s3 sends a location constraint on bucket creation, which S3 (and moto)
/// refuse for us-east-1.
pub const REGION: &str = "eu-central-1";

pub fn s3_endpoint() -> Option<String> {
    match std::env::var("VITRINA_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("VITRINA_TEST_S3_ENDPOINT is not set: CI must start an S3-compatible server (see .ci/run)")
        }
        _ => {
            // Straight to stderr: libtest captures eprintln! of passing tests, and a skip must
            // be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: set VITRINA_TEST_S3_ENDPOINT (e.g. start `moto_server -p 5123`, then http://127.0.0.1:5123) to run the replication tests"
            );
            None
        }
    }
}

/// A fresh bucket per test, so tests never see each other's objects.
pub async fn new_bucket(endpoint: &str) -> Box<Bucket> {
    let name = format!("vitrina-test-{}", &uuid_like());
    let region = Region::Custom { region: REGION.into(), endpoint: endpoint.into() };
    let credentials = Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None).unwrap();
    let created = Bucket::create_with_path_style(&name, region, credentials, BucketConfiguration::default()).await.expect("create bucket");
    assert!(created.success(), "create bucket: {} {}", created.response_code, created.response_text);
    created.bucket
}

pub fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}-{:x}", nanos, std::process::id())
}

pub fn replication_env(endpoint: &str, bucket: &Bucket, interval_ms: u64) -> Vec<(String, String)> {
    vec![
        ("VITRINA_REPLICATION__ENDPOINT".into(), endpoint.into()),
        ("VITRINA_REPLICATION__BUCKET".into(), bucket.name()),
        ("VITRINA_REPLICATION__REGION".into(), REGION.into()),
        ("VITRINA_REPLICATION__ACCESS_KEY".into(), ACCESS_KEY.into()),
        ("VITRINA_REPLICATION__SECRET_KEY".into(), SECRET_KEY.into()),
        ("VITRINA_REPLICATION__PREFIX".into(), "it/v1".into()),
        ("VITRINA_REPLICATION__SNAPSHOT_INTERVAL_MS".into(), interval_ms.to_string()),
    ]
}
