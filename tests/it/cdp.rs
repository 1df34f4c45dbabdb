//! A small Chrome DevTools Protocol client for headless Chromium (the
//! system's `chromium`, nothing downloaded): launch, one page, commands,
//! events, screenshots. Shared by the browser tests and the dashboards
//! benchmark.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The Chromium binary: `FATHOM_CHROMIUM`, else the first of the usual
/// names that runs.
pub fn chromium() -> Option<String> {
    let candidates = std::env::var("FATHOM_CHROMIUM")
        .map(|c| vec![c])
        .unwrap_or_else(|_| {
            ["chromium", "chromium-browser", "google-chrome"]
                .map(str::to_owned)
                .to_vec()
        });
    candidates.into_iter().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// One headless Chromium with one page, spoken to over CDP.
pub struct Browser {
    child: Child,
    socket: Socket,
    session: String,
    next_id: u64,
    /// Every event received (console, exceptions, network).
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    pub async fn launch(binary: &str) -> Result<Self> {
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                "--window-size=1366,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (found, url) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = found.send(line[at..].trim().to_owned());
                }
            }
        });
        let url = url
            .recv_timeout(Duration::from_secs(30))
            .context("Chromium did not announce its DevTools endpoint")?;
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = target["targetId"].as_str().context("no target id")?;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("no session id")?
            .to_owned();
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            browser.call(domain, json!({})).await?;
        }
        // Headless pages are never focused; keyboard tests need focus.
        browser
            .call(
                "Emulation.setFocusEmulationEnabled",
                json!({"enabled": true}),
            )
            .await?;
        browser.viewport(1366, 900).await?;
        Ok(browser)
    }

    /// Sends a command (to the page once attached) and waits for its answer,
    /// keeping the events that arrive meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = Value::from(self.session.clone());
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.socket.next())
                .await
                .with_context(|| format!("{method}: no answer"))?;
            let Some(frame) = next else {
                bail!("the browser closed the connection");
            };
            let Message::Text(text) = frame? else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str())?;
            if value["id"].as_u64() == Some(id) {
                if let Some(error) = value.get("error") {
                    bail!("{method}: {error}");
                }
                return Ok(value["result"].clone());
            }
            if value.get("method").is_some() {
                self.events.push(value);
            }
        }
    }

    pub async fn viewport(&mut self, width: u32, height: u32) -> Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        Ok(())
    }

    /// Evaluates an expression (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until the page says it has drawn (`body[data-ready=1]`).
    pub async fn ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let state = self
                .eval("document.body ? document.body.dataset.ready : ''")
                .await
                .unwrap_or(Value::Null);
            if state == "1" {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the page did not finish drawing in 30 s")
    }

    /// Loads a URL and waits until the page has drawn.
    pub async fn open(&mut self, url: &str) -> Result<()> {
        // The old document must not answer for the new one.
        let _ = self
            .eval("document.body && (document.body.dataset.ready = 'leaving')")
            .await;
        self.call("Page.navigate", json!({"url": url})).await?;
        self.ready().await
    }

    /// Runs a script that changes the page (a click, a filter) and waits
    /// for the page to draw again.
    pub async fn act(&mut self, script: &str) -> Result<()> {
        // A block, so each script's names are its own.
        self.eval(&format!("{{ {script} }}")).await?;
        self.ready().await
    }

    /// Requests to `path_part` the page sent after event number `from`.
    pub fn requests_since(&self, from: usize, path_part: &str) -> Vec<String> {
        self.events[from.min(self.events.len())..]
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str())
            .filter(|url| url.contains(path_part))
            .map(str::to_owned)
            .collect()
    }

    /// Console errors, uncaught exceptions, failed loads and HTTP errors
    /// seen so far.
    pub fn problems(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", p["exceptionDetails"]))
                    }
                    "Runtime.consoleAPICalled" if p["type"] == "error" => {
                        Some(format!("console.error: {}", p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        Some(format!("log: {}", p["entry"]["text"]))
                    }
                    "Network.loadingFailed" => Some(format!("request failed: {p}")),
                    "Network.responseReceived"
                        if p["response"]["status"].as_u64().is_some_and(|s| s >= 400) =>
                    {
                        Some(format!(
                            "HTTP {} for {}",
                            p["response"]["status"], p["response"]["url"]
                        ))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Writes a full-page PNG.
    pub async fn screenshot(&mut self, path: &Path) -> Result<()> {
        use base64::Engine;
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let size = &metrics["cssContentSize"];
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}),
            )
            .await?;
        let data = shot["data"].as_str().context("no screenshot data")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
        std::fs::write(path, bytes)?;
        Ok(())
    }
}
