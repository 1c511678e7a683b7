//! `connect-trace top` in a real terminal: each test starts its own tmux
//! server, types with `send-keys` and reads the screen with
//! `capture-pane`, while the test process makes refused connects (connect(2)
//! and io_uring) to ports of its own, or a pod's container does. Also `top
//! --from` against a daemon started here (its `/live` endpoint, and the end
//! of the view when the daemon goes away), a terminal that hangs up (with
//! and without SIGHUP), and the refusal without a terminal. About 13 s in
//! all, the tests running side by side (the longest waits out the
//! daemon's 5 s of grace).
//!
//! Needs root, tmux, and Docker's engine with busybox-static for the pod
//! (`cargo xtask setup` installs them; `cargo xtask test` runs as root).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

mod common;
mod engines;

use std::{
    net::{Ipv4Addr, TcpStream},
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{
    RawAddr, closed_port,
    daemon::{BINARY, Daemon, Ready, TIMEOUT, own_pid},
    free_port, require_root,
    uring::io_uring_connect,
};
use io_uring::{squeue, types};
use serde_json::Value;

/// The view must show a destination failing now within this long.
const APPEARS_WITHIN: Duration = Duration::from_secs(5);

/// How long `top --from` waits for a daemon that stopped answering.
const DAEMON_GONE_AFTER: Duration = Duration::from_secs(5);

/// A private tmux server with one pane running a plain `sh`.
struct Tmux {
    /// Its socket, removed when it is dropped (tmux leaves it behind).
    socket: PathBuf,
}

impl Tmux {
    /// A `width`×`height` terminal, with `env` set for the shell.
    fn start(name: &str, width: u16, height: u16, env: &[(&str, &str)]) -> Self {
        require_root();
        let tmux = Self {
            socket: std::env::temp_dir().join(format!(
                "connect-trace-top-{}-{name}.tmux",
                std::process::id()
            )),
        };
        let mut shell = String::from("env PS1='$ '");
        for (key, value) in env {
            shell.push_str(&format!(" {key}={value}"));
        }
        shell.push_str(" sh");
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-s",
            "top",
            &shell,
        ]);
        // Typed before the shell is up, a command would be echoed by the
        // terminal first and the prompt would land on the output's line.
        tmux.wait_for("the shell's prompt", TIMEOUT, |screen| {
            screen.starts_with('$')
        });
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap_or_else(|error| {
                panic!("running tmux (install it: cargo xtask setup): {error}")
            });
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "top", "-l", text]);
        self.run(&["send-keys", "-t", "top", "Enter"]);
    }

    /// Presses keys by tmux's names (`q`, `Escape`, `Tab`, ...).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The screen as text.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// The screen with its escape sequences (colors, emphasis).
    fn screen_with_styles(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", "top"])
    }

    /// A tmux format about the pane (`#{alternate_on}`, ...).
    fn pane(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "top", format])
            .trim()
            .to_owned()
    }

    /// Waits until the screen satisfies `test`, and returns it.
    fn wait_for(&self, what: &str, within: Duration, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if test(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}; the screen:\n{screen}"
            );
            // Polling a screen: tmux has nothing to wait on.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// After the view ended with `top-exit: N` printed by the shell: the
    /// status was 0, and the terminal is as it was (main screen, cursor
    /// shown, echo and line editing back, a prompt that takes commands).
    fn assert_left_usable(&self) {
        self.assert_left_usable_after(0);
    }

    /// As [`Tmux::assert_left_usable`], with top's exit `status`.
    fn assert_left_usable_after(&self, status: u8) {
        // `top-exit: ` and digits: the typed command has `top-exit: $?`.
        let exit = |screen: &str| {
            screen.lines().find_map(|line| {
                let (_, status) = line.split_once("top-exit: ")?;
                (!status.is_empty() && status.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| status.to_owned())
            })
        };
        let screen = self.wait_for("exit status", TIMEOUT, |s| exit(s).is_some());
        assert_eq!(
            exit(&screen).as_deref(),
            Some(status.to_string().as_str()),
            "{screen}"
        );
        assert_eq!(
            self.pane("#{alternate_on}"),
            "0",
            "still on the alternate screen"
        );
        assert_eq!(self.pane("#{cursor_flag}"), "1", "the cursor is hidden");
        self.type_line(
            "stty -a | grep -qw -e -icanon -e -echo && echo mode: raw || echo mode: cooked",
        );
        let mode = |screen: &str| {
            screen
                .lines()
                .map(|line| line.trim_start_matches("$ "))
                .find(|line| *line == "mode: raw" || *line == "mode: cooked")
                .map(str::to_owned)
        };
        let screen = self.wait_for("the terminal's mode", TIMEOUT, |s| mode(s).is_some());
        assert_eq!(mode(&screen).as_deref(), Some("mode: cooked"), "{screen}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A thread of this process that keeps making refused connects to
/// 127.0.0.1:`port`, one every `every`, under the thread name `name`.
struct RefusedLoop {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A refused connect(2) to 127.0.0.1:`port`.
fn refused_syscall(port: u16) {
    let error = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ECONNREFUSED));
}

/// A refused io_uring connect request to 127.0.0.1:`port`.
fn refused_io_uring(port: u16) {
    let socket = common::socket(libc::AF_INET, libc::SOCK_STREAM);
    let errno = io_uring_connect(
        types::Fd(socket.as_raw_fd()),
        None,
        &RawAddr::inet(Ipv4Addr::LOCALHOST, port),
        squeue::Flags::empty(),
        None,
    );
    assert_eq!(errno, libc::ECONNREFUSED);
}

impl RefusedLoop {
    fn start(port: u16, every: Duration, name: &str) -> Self {
        Self::start_with(port, every, name, refused_syscall)
    }

    /// Refused by `connect`, one every `every`.
    fn start_with(port: u16, every: Duration, name: &str, connect: fn(u16)) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        connect(port);
                        std::thread::sleep(every);
                    }
                }
            })
            .unwrap();
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RefusedLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The line of the table that shows `key`, and its number on the screen.
fn table_line<'a>(screen: &'a str, key: &str) -> Option<(usize, &'a str)> {
    screen
        .lines()
        .take_while(|line| !line.starts_with("RECENT FAILURES"))
        .enumerate()
        .find(|(_, line)| line.contains(key))
}

fn shows_refused(screen: &str, port: u16) -> bool {
    table_line(screen, &format!("127.0.0.1:{port} "))
        .is_some_and(|(_, line)| line.contains("ECONNREFUSED"))
}

/// The command line of `top` for the shell in the pane; the shell prints
/// `top-exit: STATUS` after it, and `pid_file` gets top's process id.
fn top_command(args: &str, pid_file: Option<&PathBuf>) -> String {
    match pid_file {
        Some(path) => format!(
            "sh -c 'echo $$ > {}; exec {BINARY} top {args}'; echo \"top-exit: $?\"",
            path.display()
        ),
        None => format!("{BINARY} top {args}; echo \"top-exit: $?\""),
    }
}

#[test]
fn a_failing_destination_shows_within_5s_at_120x40_and_keys_work() {
    let port = closed_port("127.0.0.1");
    let slow_port = closed_port("127.0.0.1");
    // The loops run in this process under hostile thread names: what a
    // program names itself must never reach the terminal as control codes.
    let _fast = RefusedLoop::start(port, Duration::from_millis(20), "\u{1b}]2;pwned\u{7}");
    let _slow = RefusedLoop::start(slow_port, Duration::from_millis(300), "slow-loop");
    // io_uring requests are attempts too, and their lines say so.
    let uring_port = closed_port("127.0.0.1");
    let _uring = RefusedLoop::start_with(
        uring_port,
        Duration::from_millis(200),
        "uring-loop",
        refused_io_uring,
    );
    let tmux = Tmux::start("keys", 120, 40, &[]);
    let started = Instant::now();
    tmux.type_line(&top_command(&format!("--pid {}", own_pid()), None));
    let screen = tmux.wait_for("refused destination", APPEARS_WITHIN, |s| {
        shows_refused(s, port) && shows_refused(s, slow_port)
    });
    eprintln!(
        "both destinations shown {:?} after typing the command:\n{screen}",
        started.elapsed()
    );
    assert!(screen.contains("connect-trace top"), "{screen}");
    assert!(screen.contains("RECENT FAILURES"), "{screen}");

    // Sorted by failures in the last 10 s: the fast loop first; `r` turns
    // the order around.
    let order = |screen: &str| {
        let fast = table_line(screen, &format!("127.0.0.1:{port} ")).map(|(at, _)| at);
        let slow = table_line(screen, &format!("127.0.0.1:{slow_port} ")).map(|(at, _)| at);
        (fast.unwrap(), slow.unwrap())
    };
    let (fast, slow) = order(&screen);
    assert!(fast < slow, "{screen}");
    tmux.keys(&["r"]);
    let screen = tmux.wait_for("reversed order", TIMEOUT, |s| {
        s.contains("sort: failures 10 s ▲") && {
            let (fast, slow) = order(s);
            fast > slow
        }
    });
    let (fast, slow) = order(&screen);
    assert!(fast > slow, "{screen}");
    tmux.keys(&["r", "s"]);
    tmux.wait_for("the next sort column", TIMEOUT, |s| {
        s.contains("sort: failures 1 m ▼")
    });

    // The filter keeps only what contains the text.
    tmux.keys(&["/"]);
    tmux.run(&["send-keys", "-t", "top", "-l", &format!(":{slow_port}")]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("filtered table", TIMEOUT, |s| {
        s.contains(&format!("filter: :{slow_port}"))
            && shows_refused(s, slow_port)
            && table_line(s, &format!("127.0.0.1:{port} ")).is_none()
    });
    assert!(
        screen
            .lines()
            .skip_while(|line| !line.starts_with("RECENT FAILURES"))
            .skip(1)
            .filter(|line| !line.trim().is_empty() && !line.starts_with("filter:"))
            .all(|line| line.contains(&format!(":{slow_port}"))),
        "failures of other destinations shown:\n{screen}"
    );
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter cleared", TIMEOUT, |s| shows_refused(s, port));

    // The processes view shows the hostile name escaped; the terminal's
    // title was never set by it.
    tmux.keys(&["2"]);
    let screen = tmux.wait_for("processes", TIMEOUT, |s| {
        s.contains("PROCESS") && s.contains("\\x1b]2;pwned\\x07")
    });
    assert!(!screen.contains('\u{1b}'), "{screen:?}");
    assert_ne!(tmux.pane("#{pane_title}"), "pwned");

    // Explain the error of the selected row.
    tmux.keys(&["5", "e"]);
    tmux.wait_for("explain", TIMEOUT, |s| {
        s.contains("explain ECONNREFUSED") && s.contains("class:      refused")
    });
    tmux.keys(&["Escape", "?"]);
    tmux.wait_for("help", TIMEOUT, |s| s.contains("reverse the order"));

    // The failures view, filtered by how the attempts were made.
    tmux.keys(&["Escape", "6", "/"]);
    tmux.run(&["send-keys", "-t", "top", "-l", "via io_uring"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("io_uring failures", TIMEOUT, |s| {
        s.contains("filter: via io_uring")
            && s.contains(&format!(
                "127.0.0.1:{uring_port}  failed ECONNREFUSED (refused)  via io_uring"
            ))
    });
    let failures: Vec<&str> = screen
        .lines()
        .skip_while(|line| !line.starts_with("RECENT FAILURES"))
        .skip(1)
        .filter(|line| line.contains(" ECONNREFUSED "))
        .collect();
    assert!(
        failures
            .iter()
            .all(|line| line.contains(&format!(":{uring_port} "))),
        "{screen}"
    );

    // Paused, the figures stay as they were; unpaused, they move again.
    let totals = |screen: &str| {
        screen
            .lines()
            .find(|line| line.contains(" attempts, "))
            .map(str::to_owned)
    };
    tmux.keys(&["p"]);
    let paused = tmux.wait_for("paused", TIMEOUT, |s| s.contains("PAUSED (p resumes)"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        totals(&tmux.screen()),
        totals(&paused),
        "moved while paused"
    );
    tmux.keys(&["p"]);
    tmux.wait_for("figures moving again", TIMEOUT, |s| {
        !s.contains("PAUSED") && totals(s) != totals(&paused)
    });
    tmux.keys(&["q"]);
    tmux.assert_left_usable();
}

#[test]
fn processes_show_the_pod_they_ran_in() {
    require_root();
    let mut docker = engines::Docker::start();
    docker.import_image();
    docker.import_image_into_containerd("k8s.io");
    // A pod's container, started by containerd with the labels the CRI
    // sets, whose program keeps failing to connect.
    let pod = format!("web-{}", std::process::id());
    let pod_uid = engines::random_pod_uid();
    let id = engines::random_container_id();
    docker.ctr_run(
        "k8s.io",
        &id,
        &format!("/kubepods/burstable/pod{pod_uid}/{id}"),
        &[
            ("io.kubernetes.pod.name", &pod),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.uid", &pod_uid),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    // Bounded (about 30 s), and killed with its container at the end.
    let mut refusing = Command::new("ctr")
        .arg("--address")
        .arg(&docker.containerd_socket)
        .args(["-n", "k8s.io", "task", "exec", "--exec-id", "refuse", &id])
        .args(["/bin/busybox", "sh", "-c"])
        .arg(
            "i=0; while [ $i -lt 300 ]; do /bin/busybox nc 127.0.0.1 1 </dev/null; \
             /bin/busybox usleep 100000; i=$((i+1)); done",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let tmux = Tmux::start("pod", 120, 40, &[]);
    tmux.type_line(&top_command(
        &format!(
            "--pod shop/{pod} --docker-socket {} --containerd-socket {}",
            docker.socket.display(),
            docker.containerd_socket.display()
        ),
        None,
    ));
    let screen = tmux.wait_for("the pod's refused destination", APPEARS_WITHIN * 2, |s| {
        table_line(s, "127.0.0.1:1 ").is_some_and(|(_, line)| line.contains("ECONNREFUSED"))
    });
    let workload = format!("failed ECONNREFUSED (refused)  pod shop/{pod} (app)");
    assert!(
        screen
            .lines()
            .skip_while(|line| !line.starts_with("RECENT FAILURES"))
            .any(|line| line.contains("busybox[") && line.contains(&workload)),
        "failures say where they came from:\n{screen}"
    );
    tmux.keys(&["2"]);
    tmux.wait_for("the process and its pod", TIMEOUT, |s| {
        table_line(s, &format!("in shop/{pod} "))
            .is_some_and(|(_, line)| line.contains("busybox ["))
    });
    tmux.keys(&["3"]);
    tmux.wait_for("the container and its pod", TIMEOUT, |s| {
        table_line(s, &format!("app in shop/{pod} ")).is_some()
    });
    tmux.keys(&["4"]);
    // (The title names the pod too, for --pod.)
    tmux.wait_for("the pod", TIMEOUT, |s| {
        s.lines()
            .any(|line| line.contains(&format!(" shop/{pod} ")) && line.contains("ECONNREFUSED"))
    });
    tmux.keys(&["q"]);
    tmux.assert_left_usable();
    let _ = refusing.kill();
    let _ = refusing.wait();
    docker.stop();
}

/// An SGR parameter that sets a foreground or background color.
fn sets_color(screen: &str) -> bool {
    screen.split("\u{1b}[").skip(1).any(|sequence| {
        let Some(end) = sequence.find('m') else {
            return false;
        };
        sequence[..end].split(';').any(|param| {
            matches!(
                param.parse::<u32>(),
                Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
            )
        })
    })
}

#[test]
fn at_80x24_it_fits_and_no_color_means_no_color() {
    let port = closed_port("127.0.0.1");
    let _loop = RefusedLoop::start(port, Duration::from_millis(50), "refuse-80x24");
    for no_color in [false, true] {
        let env: &[(&str, &str)] = if no_color { &[("NO_COLOR", "1")] } else { &[] };
        let tmux = Tmux::start(&format!("small-{no_color}"), 80, 24, env);
        tmux.type_line(&top_command(&format!("--pid {}", own_pid()), None));
        let screen = tmux.wait_for("refused destination", APPEARS_WITHIN, |s| {
            shows_refused(s, port)
        });
        assert!(screen.contains("6 Failures"), "every tab fits:\n{screen}");
        assert!(screen.contains("sort: failures 10 s"), "{screen}");
        let styled = tmux.screen_with_styles();
        assert_eq!(
            sets_color(&styled),
            !no_color,
            "NO_COLOR={no_color}: {styled:?}"
        );
        tmux.keys(&["C-c"]);
        tmux.assert_left_usable();
    }
}

#[test]
fn sigterm_and_sighup_end_it_like_q() {
    let port = closed_port("127.0.0.1");
    let _loop = RefusedLoop::start(port, Duration::from_millis(50), "refuse-signals");
    let tmux = Tmux::start("signals", 120, 40, &[]);
    let pid_file =
        std::env::temp_dir().join(format!("connect-trace-top-{}.pid", std::process::id()));
    for signal in [libc::SIGTERM, libc::SIGHUP] {
        let _ = std::fs::remove_file(&pid_file);
        tmux.type_line(&format!(
            "clear; {}",
            top_command(&format!("--pid {}", own_pid()), Some(&pid_file))
        ));
        tmux.wait_for("refused destination", APPEARS_WITHIN, |s| {
            shows_refused(s, port)
        });
        let pid: libc::pid_t = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: a plain syscall on the process the shell started for us.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        tmux.assert_left_usable();
    }
    let _ = std::fs::remove_file(&pid_file);
}

/// `GET /live` on `port`: the JSON body.
fn live(port: u16) -> Value {
    use std::io::{Read as _, Write as _};
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    write!(stream, "GET /live HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/json"), "{head}");
    serde_json::from_str(body).unwrap()
}

#[test]
fn from_a_running_daemon() {
    let port = closed_port("127.0.0.1");
    let _loop = RefusedLoop::start(port, Duration::from_millis(50), "refuse-from");
    let metrics = free_port();
    let address = format!("127.0.0.1:{metrics}");
    let daemon = Daemon::start_ready(
        &[],
        &[
            "--pid",
            &own_pid(),
            "--metrics",
            &address,
            "--output",
            "/dev/null",
        ],
        Ready::Metrics(metrics),
    );
    // The endpoint itself.
    let key = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + APPEARS_WITHIN;
    let snapshot = loop {
        let snapshot = live(metrics);
        let shown = snapshot["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["key"] == key.as_str());
        if shown {
            break snapshot;
        }
        assert!(Instant::now() < deadline, "{key} not in {snapshot:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(snapshot["type"], "live");
    let row = snapshot["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == key.as_str())
        .unwrap();
    assert_eq!(row["error"], "ECONNREFUSED", "{row}");
    assert_eq!(row["class"], "refused", "{row}");
    assert_eq!(row["errno"], libc::ECONNREFUSED, "{row}");
    assert!(row["10s"]["failures"].as_u64().unwrap() >= 1, "{row}");
    assert_eq!(row["10s"]["failures"], row["10s"]["attempts"], "{row}");
    let record = &snapshot["recent_failures"][0];
    assert_eq!(record["type"], "connect", "{record}");
    assert_eq!(record["final_errno_name"], "ECONNREFUSED", "{record}");
    assert_eq!(
        snapshot["history"]["attempts"].as_array().unwrap().len(),
        120
    );
    for count in ["records_lost", "outcomes_lost", "events_missed"] {
        assert!(snapshot["losses"][count].is_u64(), "{}", snapshot["losses"]);
    }

    // The view of it, in a terminal.
    let tmux = Tmux::start("from", 120, 40, &[]);
    tmux.type_line(&top_command(&format!("--from http://{address}"), None));
    let screen = tmux.wait_for("refused destination", APPEARS_WITHIN, |s| {
        shows_refused(s, port)
    });
    assert!(
        screen.contains(&format!("from http://{address}")),
        "{screen}"
    );
    // `q` ends it as it ends a standalone view.
    tmux.keys(&["q"]);
    tmux.assert_left_usable();

    // Again; then the daemon goes away: the view says so at once, then
    // ends with an error that says what happened.
    tmux.type_line(&format!(
        "clear; {}",
        top_command(&format!("--from http://{address}"), None)
    ));
    tmux.wait_for("refused destination", APPEARS_WITHIN, |s| {
        shows_refused(s, port)
    });
    let stopped = daemon.stop_counted(libc::SIGTERM);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let gone = Instant::now();
    let screen = tmux.wait_for("the daemon's absence", Duration::from_secs(3), |s| {
        s.contains("the daemon has not answered for") && s.contains("Connection refused")
    });
    assert!(shows_refused(&screen, port), "figures kept:\n{screen}");
    let screen = tmux.wait_for(
        "top's end",
        DAEMON_GONE_AFTER + Duration::from_secs(4),
        |s| s.contains("top-exit: "),
    );
    eprintln!("top ended {:?} after the daemon:\n{screen}", gone.elapsed());
    let error = screen
        .lines()
        .find(|line| line.starts_with("connect-trace: error: "))
        .unwrap_or_else(|| panic!("no error message:\n{screen}"));
    assert!(
        error.contains(&format!(
            "the daemon at http://{address}/live stopped answering"
        )),
        "{screen}"
    );
    tmux.assert_left_usable_after(1);
}

/// A shell script that runs top as a login shell would, and outlives the
/// terminal to tell how top ended: it ignores SIGHUP itself (top installs
/// its own handler) and writes top's process id, its stderr and its exit
/// status to files. With `own_session`, top runs in a session of its own,
/// so that a hang-up reaches it only as the end of its input (no SIGHUP):
/// what a dropped SSH connection can leave.
struct Outliving {
    dir: PathBuf,
}

impl Outliving {
    fn new(name: &str, own_session: bool) -> Self {
        let dir =
            std::env::temp_dir().join(format!("connect-trace-top-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "trap '' HUP\n{}sh -c 'echo $$ > {dir}/pid; exec {BINARY} top --pid {pid}' 2> {dir}/stderr\necho $? > {dir}/status\n",
            if own_session { "setsid " } else { "" },
            dir = dir.display(),
            pid = own_pid(),
        );
        std::fs::write(dir.join("script.sh"), script).unwrap();
        Self { dir }
    }

    fn command(&self) -> String {
        format!("sh {}/script.sh", self.dir.display())
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }
}

impl Drop for Outliving {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_terminal_that_hangs_up_ends_it() {
    let port = closed_port("127.0.0.1");
    let _loop = RefusedLoop::start(port, Duration::from_millis(50), "refuse-hangup");
    for own_session in [false, true] {
        let outliving = Outliving::new(&format!("hangup-{own_session}"), own_session);
        let tmux = Tmux::start(&format!("hangup-{own_session}"), 120, 40, &[]);
        tmux.type_line(&outliving.command());
        tmux.wait_for("refused destination", APPEARS_WITHIN, |s| {
            shows_refused(s, port)
        });
        let pid: libc::pid_t = outliving.read("pid").unwrap().trim().parse().unwrap();
        // The terminal goes away under it, as when an SSH session drops.
        tmux.run(&["kill-server"]);
        let hung_up = Instant::now();
        let status = loop {
            if let Some(status) = outliving.read("status").filter(|s| s.ends_with('\n')) {
                break status;
            }
            assert!(
                hung_up.elapsed() < Duration::from_secs(3),
                "top (pid {pid}, own session: {own_session}) still runs 3 s after its terminal hung up"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        eprintln!(
            "own session {own_session}: top ended {:?} after the hang-up",
            hung_up.elapsed()
        );
        let stderr = outliving.read("stderr").unwrap();
        assert_eq!(status.trim(), "0", "own session {own_session}: {stderr}");
        assert!(
            stderr.contains("the terminal hung up") && stderr.contains("top ends"),
            "own session {own_session}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        // SAFETY: a plain syscall; the process is gone and reaped.
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1, "top {pid} still runs");
    }
}

fn top_without_terminal(args: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("top")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn without_a_terminal_it_points_to_run() {
    for args in [&[][..], &["--from", "127.0.0.1:1"][..]] {
        let output = top_without_terminal(args);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("needs a terminal"), "{stderr}");
        assert!(stderr.contains("connect-trace run"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    let output = top_without_terminal(&["--from", "x:1", "--pid", "1"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be used with"));
}
