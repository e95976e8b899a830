//! Debian's real `crowdsec-firewall-bouncer` in nftables mode enforces apiwatch's decisions:
//! apiwatch and the bouncer run in a network namespace the test creates (so the firewall rules
//! touch nothing outside it, and all traffic stays on that namespace's loopback); a block
//! decision's address appears in the bouncer's nftables set and leaves when the decision
//! expires. `.ci/run` installs the bouncer, nftables and iproute2; the test needs root (CI runs
//! as root) and fails loudly without them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;

const FIREWALL_BOUNCER: &str = "/usr/bin/crowdsec-firewall-bouncer";

/// A network namespace, deleted (with everything in it) on drop.
struct Namespace {
    name: String,
    children: Vec<Child>,
}

impl Namespace {
    fn create() -> Namespace {
        let name = format!("apiwatch-test-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        let made = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("`ip` (iproute2) is missing; .ci/run installs it");
        assert!(
            made.status.success(),
            "cannot create a network namespace (root needed): {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let namespace = Namespace {
            name,
            children: Vec::new(),
        };
        let up = namespace.run(&["ip", "link", "set", "lo", "up"]);
        assert!(up.status.success());
        namespace
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args[0]).args(&args[1..]).output().unwrap()
    }

    fn blacklist(&self) -> String {
        let listed = self.run(&[
            "nft",
            "list",
            "set",
            "ip",
            "crowdsec",
            "crowdsec-blacklists",
        ]);
        String::from_utf8_lossy(&listed.stdout).into_owned()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

#[test]
fn the_firewall_bouncer_bans_decided_addresses_in_nftables_until_expiry() {
    assert!(
        Path::new(FIREWALL_BOUNCER).exists(),
        "{FIREWALL_BOUNCER} is missing: install Debian's crowdsec-firewall-bouncer and nftables (.ci/run does)"
    );
    let mut namespace = Namespace::create();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();

    // apiwatch inside the namespace (its upstream need not exist for this test).
    let mut apiwatch = namespace
        .command(BIN)
        .args(["serve", "--upstream", "http://127.0.0.1:9"])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--data")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = apiwatch.stdout.take().unwrap();
    let stderr = apiwatch.stderr.take().unwrap();
    namespace.children.push(apiwatch);
    // Drain both pipes for the whole test (a closed pipe would fail apiwatch's writes).
    let (token_sender, token_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(token) = line.split_whitespace().find(|word| word.starts_with("aw_")) {
                let _ = token_sender.send(token.to_owned());
            }
        }
    });
    let (line_sender, line_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("listening ") {
                let _ = line_sender.send(line);
            }
        }
    });
    let listening = line_receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("apiwatch did not start in the namespace");
    let token = token_receiver
        .recv_timeout(Duration::from_secs(5))
        .expect("no token printed");
    let admin = listening
        .split_whitespace()
        .find_map(|part| part.strip_prefix("admin="))
        .unwrap()
        .to_owned();

    let key = run(&[
        "bouncer",
        "add",
        "edge-fw",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert!(key.status.success());
    let key = stdout_of(&key).trim().to_owned();
    let added = namespace
        .command(BIN)
        .args([
            "decisions",
            "add",
            "192.0.2.44",
            "--ttl",
            "10s",
            "--reason",
            "brute force",
        ])
        .args(["--admin", &admin])
        .env("APIWATCH_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    // A throttle never becomes a firewall ban.
    let throttled = namespace
        .command(BIN)
        .args([
            "decisions",
            "add",
            "192.0.2.45",
            "--ttl",
            "1h",
            "--reason",
            "flood",
            "--throttle",
            "5/s",
        ])
        .args(["--admin", &admin])
        .env("APIWATCH_TOKEN", &token)
        .output()
        .unwrap();
    assert!(throttled.status.success());

    let config = work.path().join("firewall-bouncer.yaml");
    std::fs::write(
        &config,
        format!(
            "mode: nftables\npid_dir: {work}\nupdate_frequency: 1s\ndaemonize: false\n\
             log_mode: file\nlog_dir: {work}\nlog_level: info\n\
             api_url: http://{admin}/\napi_key: {key}\ninsecure_skip_verify: false\n\
             disable_ipv6: false\ndeny_action: DROP\ndeny_log: false\n\
             supported_decisions_types:\n  - ban\n\
             blacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\n\
             nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n\
             \x20 ipv6:\n    enabled: true\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n\
             prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60601\n",
            work = work.path().display(),
        ),
    )
    .unwrap();
    let bouncer = namespace
        .command(FIREWALL_BOUNCER)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    namespace.children.push(bouncer);
    let log = || {
        std::fs::read_to_string(work.path().join("crowdsec-firewall-bouncer.log"))
            .unwrap_or_default()
    };

    let banned = poll(
        Duration::from_secs(30),
        || {
            let set = namespace.blacklist();
            set.contains("192.0.2.44").then_some(set)
        },
        || {
            format!(
                "192.0.2.44 never reached the nftables set; bouncer log:\n{}",
                log()
            )
        },
    );
    assert!(
        !banned.contains("192.0.2.45"),
        "a throttle became a ban:\n{banned}"
    );
    // The rule that drops banned addresses is in place.
    let chain = namespace.run(&["nft", "list", "table", "ip", "crowdsec"]);
    let chain = String::from_utf8_lossy(&chain.stdout);
    assert!(
        chain.contains("@crowdsec-blacklists") && chain.contains("drop"),
        "{chain}"
    );
    // The decision expires after 10 s; the bouncer withdraws the address.
    poll(
        Duration::from_secs(40),
        || (!namespace.blacklist().contains("192.0.2.44")).then_some(()),
        || {
            format!(
                "192.0.2.44 stayed banned after expiry; bouncer log:\n{}",
                log()
            )
        },
    );
}
