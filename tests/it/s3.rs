//! The warehouse on S3: a real S3-protocol server (moto in server mode, from
//! PyPI) on loopback, driven through the `fathom` binary exactly as an
//! operator would configure it. CI installs moto; elsewhere the test skips
//! with a notice unless FATHOM_REQUIRE_S3 is set.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::support::fathom_bin;

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[test]
fn import_and_query_a_warehouse_on_s3() -> Result<()> {
    let has_moto = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_moto {
        if std::env::var_os("FATHOM_REQUIRE_S3").is_some() {
            bail!("moto_server is required (pip install 'moto[server]')");
        }
        println!("skipped: moto_server not installed (CI installs it)");
        return Ok(());
    }
    let port = free_port()?;
    let _server = Server(
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start moto_server")?,
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("moto_server did not start listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let create_bucket = Command::new("python3")
        .args([
            "-c",
            "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='fathom')",
            &endpoint,
        ])
        .output()?;
    assert!(
        create_bucket.status.success(),
        "{}",
        String::from_utf8_lossy(&create_bucket.stderr)
    );

    let state = tempfile::tempdir()?;
    let state_url = format!("sqlite://{}/state.db", state.path().display());
    let run = |args: &[&str]| {
        Command::new(fathom_bin())
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("FATHOM_WAREHOUSE__URL", "s3://fathom/warehouse")
            .env("FATHOM_WAREHOUSE__S3_ENDPOINT", &endpoint)
            .env("FATHOM_WAREHOUSE__S3_ALLOW_HTTP", "true")
            .env("FATHOM_STATE__DATABASE_URL", &state_url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
    };
    for _ in 0..2 {
        let output = run(&["import", "deployments", "examples/deployments.csv"])?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = run(&[
        "sql",
        "SELECT count(*) AS n, count(DISTINCT deployment_id) AS d FROM deployments",
        "--format",
        "csv",
    ])?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "n,d\n76,76\n");
    Ok(())
}
