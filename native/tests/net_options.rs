//! The CLI's network options refuse what they cannot use, saying what to give instead,
//! before anything is opened.

use std::process::Command;

fn refused(args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("wt-net-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("f.bin");
    std::fs::write(&file, b"hello").expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_webtorrent"))
        .args(["--no-dht", "seed"])
        .arg(&file)
        .args(args)
        .output()
        .expect("run webtorrent");
    assert!(!o.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_port_mapping_and_ice_options_are_refused_with_what_to_give() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--port-mapping", "upnp,igd"],
            "--port-mapping igd: not a method; give pcp, natpmp and/or upnp",
        ),
        (
            &["--no-port-mapping", "--port-mapping", "upnp"],
            "contradict each other",
        ),
        (
            &["--turn", "11.0.0.1:3478"],
            "--turn needs --turn-username NAME and --turn-credential SECRET",
        ),
        (&["--turn-username", "u"], "give --turn URL too"),
        (
            &["--stun", "https://stun.example.org"],
            "not a STUN URL; give e.g. stun:example.org:3478",
        ),
        (
            &[
                "--turn",
                "stun:x:1",
                "--turn-username",
                "u",
                "--turn-credential",
                "p",
            ],
            "not a TURN URL",
        ),
        (&["--stun", ":3478"], "no host"),
    ];
    for (args, want) in cases {
        let err = refused(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
