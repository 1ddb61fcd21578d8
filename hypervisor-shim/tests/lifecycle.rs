//! The VM lifecycle end to end: real VM processes on this host's /dev/kvm running the
//! built-in test guest, driven through the supervisor as the server drives them.
//!
//! Without /dev/kvm these tests fail under CI (CI machines have it) and elsewhere print
//! plainly that they did not run.

mod common;

use common::{config, kvm_present, wait_for, Host, VMM};
use hypervisor_shim::guest::test_guest::layout;
use hypervisor_shim::hypervisor::KvmKind;
use hypervisor_shim::lifecycle::State;
use hypervisor_shim::protocol::{ErrorKind, Event, Request, Response};
use hypervisor_shim::supervisor::{Supervisor, SupervisorError, VmHandle};
use hypervisor_shim::vmm::config::VmConfig;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn heartbeats(vm: &VmHandle) -> Vec<u64> {
    vm.status().unwrap().heartbeats
}

/// Waits until every vCPU's counter has moved past where it was.
fn wait_heartbeats_advance(vm: &VmHandle) -> Vec<u64> {
    let before = heartbeats(vm);
    wait_for("every heartbeat to advance", || {
        heartbeats(vm)
            .iter()
            .zip(&before)
            .all(|(now, then)| now > then)
    });
    heartbeats(vm)
}

/// User plus system CPU ticks of a thread.
fn thread_cpu_ticks(pid: u32, tid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn vm_error_kind(err: SupervisorError) -> ErrorKind {
    match err {
        SupervisorError::Vm { kind, .. } => kind,
        other => panic!("expected a VM error, got {other}"),
    }
}

#[test]
fn boots_with_a_banner_and_every_vcpu_advances_its_heartbeat() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("banner", 4);
    host.wait_console("banner", "cimvirt test guest: 4 vCPUs, 32 MiB\n");
    host.wait_console("banner", "cimvirt test guest: 4 vCPUs online\n");
    let status = vm.status().unwrap();
    assert_eq!(
        (status.state, status.vcpus, status.heartbeats.len()),
        (State::Running, 4, 4)
    );
    assert!(status.first_instruction_ns.unwrap() >= status.process_start_ns);
    wait_heartbeats_advance(&vm);
    vm.call(&Request::Stop).unwrap();
    let exit = vm.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!((exit.state, exit.reason.as_str()), (State::Off, "stopped"));
}

#[test]
fn typed_bytes_are_echoed_at_once_and_a_paste_longer_than_the_fifo_arrives_whole() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("typing", 1);
    host.wait_console("typing", "1 vCPUs online\n");
    // No newline follows: the echo reaches subscribers all the same, within milliseconds.
    // (Lower-case letters are the guest's commands.)
    vm.call(&Request::SendConsole {
        bytes: b"HELLO".to_vec(),
    })
    .unwrap();
    let echoed = |host: &Host, text: &str| {
        let seen: Vec<u8> = host
            .events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(name, event)| match event {
                Event::Console { bytes } if name == "typing" => Some(bytes.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        String::from_utf8_lossy(&seen).ends_with(text)
    };
    wait_for("the echo of five bytes", || echoed(&host, "HELLO"));
    // COM1's FIFO holds 64 bytes; the rest waits in the VM process and follows in order.
    let paste: String = (0..400)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    vm.call(&Request::SendConsole {
        bytes: paste.clone().into_bytes(),
    })
    .unwrap();
    wait_for("the echo of the whole paste", || {
        echoed(&host, &format!("HELLO{paste}"))
    });
    vm.call(&Request::SendConsole {
        bytes: vec![hypervisor_shim::guest::test_guest::command::TEXT],
    })
    .unwrap();
    host.wait_console("typing", "cimvirt test guest: text done\n");
    let log = host.console("typing");
    assert_eq!(
        log.matches("cimvirt test guest: text ABCD").count(),
        hypervisor_shim::guest::test_guest::TEXT_LINES as usize
    );
    vm.call(&Request::Stop).unwrap();
}

#[test]
fn pause_stops_the_vcpus_and_resume_runs_them_again() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("pause", 2);
    wait_heartbeats_advance(&vm);
    vm.call(&Request::Pause).unwrap();
    assert_eq!(vm.status().unwrap().state, State::Paused);
    let status = vm.status().unwrap();
    let ticks: Vec<u64> = status
        .vcpu_threads
        .iter()
        .map(|&t| thread_cpu_ticks(status.pid, t))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        heartbeats(&vm),
        status.heartbeats,
        "counters frozen while paused"
    );
    let after: Vec<u64> = status
        .vcpu_threads
        .iter()
        .map(|&t| thread_cpu_ticks(status.pid, t))
        .collect();
    assert_eq!(after, ticks, "paused vCPU threads use no CPU");

    let err = vm.call(&Request::Pause).unwrap_err();
    assert_eq!(vm_error_kind(err), ErrorKind::InvalidState);
    let err = vm.call(&Request::Shutdown { timeout_ms: 100 }).unwrap_err();
    assert_eq!(
        vm_error_kind(err),
        ErrorKind::InvalidState,
        "a paused guest cannot answer"
    );

    vm.call(&Request::Resume).unwrap();
    wait_heartbeats_advance(&vm);
    assert!(host.saw(
        "pause",
        &Event::State {
            state: State::Paused
        }
    ));
    assert!(host.saw(
        "pause",
        &Event::State {
            state: State::Running
        }
    ));
    vm.call(&Request::Stop).unwrap();
}

#[test]
fn graceful_shutdown_powers_the_guest_off() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("shutdown", 2);
    host.wait_console("shutdown", "online");
    vm.call(&Request::Shutdown { timeout_ms: 10_000 }).unwrap();
    let exit = vm.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (exit.state, exit.reason.as_str()),
        (State::Off, "the guest powered off")
    );
    assert!(host
        .console("shutdown")
        .contains("Ctrl-Alt-Del\ncimvirt test guest: powering off\n"));
    wait_for("the off event", || {
        host.saw("shutdown", &Event::State { state: State::Off })
    });
    assert!(host.saw("shutdown", &Event::GuestPowerOff));
    assert!(host.supervisor.get("shutdown").is_none());
    assert_eq!(
        host.supervisor.last_exit("shutdown").unwrap().state,
        State::Off
    );
}

#[test]
fn a_guest_that_does_not_answer_times_out_and_a_hard_stop_still_works() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("spin", 2);
    host.wait_console("spin", "online");
    vm.call(&Request::SendConsole {
        bytes: b"s".to_vec(),
    })
    .unwrap();
    host.wait_console("spin", "spinning with interrupts disabled");
    // While one request waits for the guest, others are answered at once.
    let waiting = {
        let vm = vm.clone();
        std::thread::spawn(move || vm.call(&Request::Shutdown { timeout_ms: 1000 }))
    };
    wait_for("the shutdown to begin", || {
        vm.status().unwrap().state == State::ShuttingDown
    });
    let asked = Instant::now();
    assert_eq!(vm.status().unwrap().state, State::ShuttingDown);
    assert!(
        asked.elapsed() < Duration::from_millis(200),
        "status waited for the shutdown"
    );
    let err = waiting.join().unwrap().unwrap_err();
    assert_eq!(vm_error_kind(err), ErrorKind::Timeout);
    let started = Instant::now();
    let err = vm.call(&Request::Shutdown { timeout_ms: 300 }).unwrap_err();
    assert_eq!(vm_error_kind(err), ErrorKind::Timeout);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        vm.status().unwrap().state,
        State::Running,
        "still running after the timeout"
    );
    vm.call(&Request::Stop).unwrap();
    assert_eq!(
        vm.wait_exit(Duration::from_secs(10)).unwrap().state,
        State::Off
    );
}

#[test]
fn guest_reset_and_power_off_are_detected() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("reset", 1);
    wait_for("half a second of heartbeats", || heartbeats(&vm)[0] > 50);
    let before = heartbeats(&vm)[0];
    vm.call(&Request::SendConsole {
        bytes: b"r".to_vec(),
    })
    .unwrap();
    wait_for("the reset event", || {
        host.saw(
            "reset",
            &Event::Reset {
                cause: "guest".into(),
            },
        )
    });
    assert_eq!(vm.status().unwrap().last_reset.as_deref(), Some("guest"));
    assert!(
        heartbeats(&vm)[0] < before,
        "memory was cleared and the counter restarted"
    );
    wait_for("the second boot", || {
        host.console("reset").matches("1 vCPUs online").count() == 2
    });
    assert!(host
        .console("reset")
        .contains("resetting\ncimvirt test guest: 1 vCPUs, 32 MiB\n"));
    wait_heartbeats_advance(&vm);

    vm.call(&Request::Reset).unwrap();
    host.wait_console(
        "reset",
        "online\ncimvirt test guest: 1 vCPUs, 32 MiB\ncimvirt test guest: 1 vCPUs online\n",
    );
    assert_eq!(vm.status().unwrap().last_reset.as_deref(), Some("reset"));

    vm.call(&Request::SendConsole {
        bytes: b"p".to_vec(),
    })
    .unwrap();
    let exit = vm.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (exit.state, exit.reason.as_str()),
        (State::Off, "the guest powered off")
    );
}

#[test]
fn a_triple_fault_is_reported_as_a_crash() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("crash", 2);
    host.wait_console("crash", "online");
    vm.call(&Request::SendConsole {
        bytes: b"c".to_vec(),
    })
    .unwrap();
    let exit = vm.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(exit.state, State::Crashed);
    assert!(
        exit.reason
            .contains("vCPU 0: triple fault (KVM_EXIT_SHUTDOWN) at rip 0x"),
        "{}",
        exit.reason
    );
    assert!(
        exit.reason.contains("code 0f 0b"),
        "the ud2 that faulted: {}",
        exit.reason
    );
    wait_for("the crash event", || {
        host.events
            .lock()
            .unwrap()
            .iter()
            .any(|(n, e)| n == "crash" && matches!(e, Event::Crashed { .. }))
    });
}

#[test]
fn the_dirty_log_reports_the_pages_guest_and_vmm_wrote() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("dirty", 2);
    wait_heartbeats_advance(&vm);
    let pages = |vm: &VmHandle| match vm.request(&Request::DirtyPages).unwrap() {
        Response::DirtyPages { pages } => pages,
        other => panic!("{other:?}"),
    };
    pages(&vm); // turns logging on
    wait_heartbeats_advance(&vm);
    let dirty = pages(&vm);
    let heartbeat_page = layout::HEARTBEAT / 4096;
    let stack_pages = [layout::STACKS / 4096, layout::STACKS / 4096 + 1];
    assert!(dirty.contains(&heartbeat_page), "{dirty:?}");
    assert!(
        stack_pages.iter().all(|p| dirty.contains(p)),
        "interrupt frames on both stacks: {dirty:?}"
    );
    assert!(
        !dirty.contains(&(layout::CODE / 4096)),
        "code is not written: {dirty:?}"
    );
    assert!(
        dirty.len() < 16,
        "an idle guest writes a handful of pages: {dirty:?}"
    );

    // The guest writing all its memory, and the VMM reloading the boot image, show up too.
    vm.call(&Request::SendConsole {
        bytes: b"f".to_vec(),
    })
    .unwrap();
    host.wait_console("dirty", "filled 28 MiB");
    assert_eq!(pages(&vm).iter().filter(|&&p| p >= 0x400).count(), 28 * 256);
    vm.call(&Request::Reset).unwrap();
    assert!(
        pages(&vm).contains(&(layout::CODE / 4096)),
        "the reset rewrote the code"
    );
    vm.call(&Request::Stop).unwrap();
}

#[test]
fn a_precopy_follows_the_running_guest_and_becomes_a_snapshot_with_its_state() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("precopy", 2);
    wait_heartbeats_advance(&vm);
    let dir = host.dir.path().join("precopy");
    std::fs::create_dir_all(&dir).unwrap();
    let memory = dir.join("memory");
    // The first copy takes every page with data; the guest runs on meanwhile.
    let first = vm.copy_memory(&memory, false).unwrap();
    let code = (layout::CODE, layout::CODE + 4096);
    assert!(
        first.iter().any(|&(a, b)| a <= code.0 && code.1 <= b),
        "{first:?}"
    );
    assert_eq!(std::fs::metadata(&memory).unwrap().len(), 32 << 20);
    // Later copies take what the guest wrote since: its heartbeat page, not its code.
    wait_heartbeats_advance(&vm);
    let dirty = vm.copy_memory(&memory, true).unwrap();
    let heartbeat = (layout::HEARTBEAT, layout::HEARTBEAT + 4096);
    assert!(
        dirty
            .iter()
            .any(|&(a, b)| a <= heartbeat.0 && heartbeat.1 <= b),
        "{dirty:?}"
    );
    assert!(
        !dirty.iter().any(|&(a, b)| a <= code.0 && code.1 <= b),
        "{dirty:?}"
    );
    assert!(
        dirty.iter().map(|(a, b)| b - a).sum::<u64>() < 64 * 4096,
        "an idle guest writes a handful of pages: {dirty:?}"
    );
    // State alone needs a paused VM.
    let err = vm
        .call(&Request::SaveState { dir: dir.clone() })
        .unwrap_err();
    assert_eq!(vm_error_kind(err), ErrorKind::InvalidState);
    vm.call(&Request::Pause).unwrap();
    vm.copy_memory(&memory, true).unwrap();
    vm.call(&Request::SaveState { dir: dir.clone() }).unwrap();
    let at_pause = heartbeats(&vm);
    vm.call(&Request::Stop).unwrap();
    vm.wait_exit(Duration::from_secs(10)).unwrap();

    // The copy and the state are a snapshot: the guest goes on exactly where it paused.
    let restored = host.supervisor.restore("precopy", &dir).unwrap();
    let status = restored.status().unwrap();
    assert_eq!(status.state, State::Paused);
    assert_eq!(status.heartbeats, at_pause, "exactly where it paused");
    restored.call(&Request::Resume).unwrap();
    wait_heartbeats_advance(&restored);
    restored.call(&Request::Stop).unwrap();
}

#[test]
fn an_instruction_the_host_cannot_emulate_is_a_crash_that_names_it() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("emulate", 1);
    host.wait_console("emulate", "online");
    vm.call(&Request::SendConsole {
        bytes: b"e".to_vec(),
    })
    .unwrap();
    if hypervisor_shim::hypervisor::kvm::detect_kind() == KvmKind::Pvm {
        // kvm_pvm emulates code that runs with interrupts disabled, and has no popcnt.
        let exit = vm.wait_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(exit.state, State::Crashed);
        assert!(
            exit.reason
                .starts_with("vCPU 0: instruction emulation failed"),
            "{}",
            exit.reason
        );
        assert!(
            exit.reason.contains("f3 48 0f b8 c0"),
            "popcnt rax, rax: {}",
            exit.reason
        );
    } else {
        host.wait_console("emulate", "popcnt ran with interrupts disabled");
        wait_heartbeats_advance(&vm);
        vm.call(&Request::Stop).unwrap();
    }
}

#[test]
fn a_killed_vm_process_is_reported_as_crashed_with_its_exit_reason() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("killed", 1);
    // kill(1), as an operator would.
    let status = Command::new("kill")
        .args(["-9", &vm.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = vm.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(exit.state, State::Crashed);
    assert_eq!(exit.reason, "the VM process was killed by signal 9");
}

#[test]
fn save_then_restore_in_a_new_process_continues_the_counters() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("save", 2);
    wait_heartbeats_advance(&vm);
    let saved_dir = host.dir.path().join("saved");
    vm.call(&Request::Pause).unwrap();
    // A save that cannot be written fails with the reason and leaves the VM as it was.
    let blocker = host.dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let err = vm
        .call(&Request::Save {
            dir: blocker.join("saved"),
        })
        .unwrap_err();
    assert!(err.to_string().contains("not-a-directory/saved"), "{err}");
    // The supervisor makes the snapshot's files before the VM is asked (a confined VM can
    // name none), so the failure is the supervisor's.
    assert!(matches!(err, SupervisorError::Files(_)), "{err:?}");
    assert_eq!(vm.status().unwrap().state, State::Paused);
    let at_save = heartbeats(&vm);
    vm.call(&Request::Save {
        dir: saved_dir.clone(),
    })
    .unwrap();
    let exit = vm.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(exit.state, State::Saved);
    let old_pid = vm.pid();

    let restored = host.supervisor.restore("save", &saved_dir).unwrap();
    assert_ne!(restored.pid(), old_pid);
    let status = restored.status().unwrap();
    assert_eq!(status.state, State::Paused, "saved paused, restored paused");
    assert_eq!(status.heartbeats, at_save, "exactly where it stopped");
    restored.call(&Request::Resume).unwrap();
    let status = restored.status().unwrap();
    assert_eq!(status.state, State::Running);
    assert!(status
        .heartbeats
        .iter()
        .zip(&at_save)
        .all(|(now, then)| now >= then));
    assert!(
        status
            .heartbeats
            .iter()
            .zip(&at_save)
            .all(|(now, then)| now - then < 50),
        "continued, not restarted: {:?} after {at_save:?}",
        status.heartbeats
    );
    wait_heartbeats_advance(&restored);
    assert!(!host.console("save").contains(
        "online\ncimvirt test guest: 2 vCPUs, 32 MiB\ncimvirt test guest: 2 vCPUs, 32 MiB"
    ));

    // A reset of a restored VM (its memory mapped from the snapshot) boots the guest afresh.
    wait_for("some running after the restore", || {
        heartbeats(&restored)[0] > at_save[0] + 20
    });
    let before_reset = heartbeats(&restored)[0];
    restored.call(&Request::Reset).unwrap();
    assert!(heartbeats(&restored)[0] < before_reset, "memory cleared");
    wait_for("the boot after the reset", || {
        host.console("save").matches("2 vCPUs online").count() == 2
    });
    wait_heartbeats_advance(&restored);
    restored.call(&Request::Stop).unwrap();
}

#[test]
fn applying_a_snapshot_takes_the_counters_back() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("snap", 1);
    wait_heartbeats_advance(&vm);
    let snap_dir = host.dir.path().join("snap1");
    vm.call(&Request::Pause).unwrap();
    let at_snapshot = heartbeats(&vm)[0];
    vm.call(&Request::Snapshot {
        dir: snap_dir.clone(),
    })
    .unwrap();
    assert_eq!(
        vm.status().unwrap().state,
        State::Paused,
        "a snapshot leaves the VM as it was"
    );
    // The memory file is guest RAM byte for byte: the MP table the VMM wrote is in it.
    let memory = std::fs::read(snap_dir.join("memory")).unwrap();
    assert_eq!(memory.len(), 32 << 20);
    let mp = hypervisor_shim::arch::layout::MPTABLE as usize;
    assert_eq!(&memory[mp..mp + 4], b"_MP_");
    assert_eq!(&memory[mp + 16..mp + 20], b"PCMP");
    vm.call(&Request::Resume).unwrap();
    wait_for("the guest to run on", || {
        heartbeats(&vm)[0] > at_snapshot + 30
    });

    vm.call(&Request::Stop).unwrap();
    vm.wait_exit(Duration::from_secs(10)).unwrap();
    let again = host.supervisor.restore("snap", &snap_dir).unwrap();
    assert_eq!(
        again.status().unwrap().state,
        State::Paused,
        "taken paused, back paused"
    );
    again.call(&Request::Resume).unwrap();
    let back = heartbeats(&again)[0];
    assert!(
        back >= at_snapshot && back < at_snapshot + 30,
        "back to {back} from the snapshot's {at_snapshot}"
    );
    wait_heartbeats_advance(&again);

    // A running VM's snapshot leaves it running; the first snapshot stays usable while the
    // restored VM maps its memory, and can be applied again.
    again
        .call(&Request::Snapshot {
            dir: snap_dir.join("nested"),
        })
        .unwrap();
    assert_eq!(again.status().unwrap().state, State::Running);
    wait_heartbeats_advance(&again);
    again.call(&Request::Stop).unwrap();
    again.wait_exit(Duration::from_secs(10)).unwrap();
    let third = host.supervisor.restore("snap", &snap_dir).unwrap();
    assert!(heartbeats(&third)[0] < at_snapshot + 30);
    third.call(&Request::Stop).unwrap();
}

#[test]
fn vms_outlive_a_killed_server_and_a_new_supervisor_adopts_them() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut server = Command::new(VMM)
        .args([
            "--supervise",
            run_dir.to_str().unwrap(),
            "--start-test-guests",
            "3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    for line in BufReader::new(server.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        pids.push(line.rsplit(' ').next().unwrap().parse::<u32>().unwrap());
    }
    assert_eq!(pids.len(), 3);
    server.kill().unwrap();
    server.wait().unwrap();

    let supervisor = Supervisor::new(config(&run_dir)).unwrap();
    let adopted = supervisor.adopt().unwrap();
    assert_eq!(adopted, ["guest0", "guest1", "guest2"]);
    for name in &adopted {
        let vm = supervisor.get(name).unwrap();
        assert!(pids.contains(&vm.pid()));
        wait_heartbeats_advance(&vm);
    }
    // Adopted VMs are controlled and watched like started ones.
    let vm = supervisor.get("guest0").unwrap();
    vm.call(&Request::SendConsole {
        bytes: b"c".to_vec(),
    })
    .unwrap();
    assert_eq!(
        vm.wait_exit(Duration::from_secs(10)).unwrap().state,
        State::Crashed
    );
    for name in ["guest1", "guest2"] {
        let vm = supervisor.get(name).unwrap();
        vm.call(&Request::Stop).unwrap();
        assert_eq!(
            vm.wait_exit(Duration::from_secs(10)).unwrap().state,
            State::Off
        );
    }
    assert!(supervisor.running().is_empty());
    assert!(
        supervisor.adopt().unwrap().is_empty(),
        "nothing left to adopt"
    );
}

#[test]
fn twenty_vms_run_at_once() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vms: Vec<_> = (0..20)
        .map(|i| {
            host.supervisor
                .start(&host.vm_config(&format!("many{i}"), 1, 16))
                .unwrap()
        })
        .collect();
    assert_eq!(host.supervisor.running().len(), 20);
    for vm in &vms {
        host.wait_console(vm.name(), "1 vCPUs online");
        wait_heartbeats_advance(vm);
    }
    for vm in &vms {
        vm.call(&Request::Shutdown { timeout_ms: 10_000 }).unwrap();
    }
    for vm in &vms {
        assert_eq!(
            vm.wait_exit(Duration::from_secs(10)).unwrap().state,
            State::Off
        );
    }
    assert!(host.supervisor.running().is_empty());
}

#[test]
fn starting_twice_and_bad_definitions_are_refused() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let vm = host.start("twice", 1);
    let err = host
        .supervisor
        .start(&host.vm_config("twice", 1, 32))
        .unwrap_err();
    assert!(matches!(err, SupervisorError::AlreadyRunning(_)), "{err}");
    let err = host
        .supervisor
        .start(&host.vm_config("zero", 0, 32))
        .unwrap_err();
    assert!(err.to_string().contains("0 vCPUs"), "{err}");
    let err = host
        .supervisor
        .start(&host.vm_config("huge", 4096, 32))
        .unwrap_err();
    assert!(matches!(err, SupervisorError::Invalid(_)), "{err}");
    assert!(
        err.to_string()
            .contains("4096 vCPUs: this host and boot image allow 1 to 254"),
        "{err}"
    );
    let err = host
        .supervisor
        .start(&host.vm_config("../escape", 1, 32))
        .unwrap_err();
    assert!(err.to_string().contains("use letters, digits"), "{err}");
    assert!(host.supervisor.get("huge").is_none() && host.supervisor.running() == ["twice"]);
    vm.call(&Request::Stop).unwrap();
}

#[test]
fn without_kvm_starting_a_vm_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("run"));
    config.kvm_device = dir.path().join("no-kvm-here");
    let supervisor = Supervisor::new(config).unwrap();
    let err = supervisor
        .start(&VmConfig::test_guest("nokvm", 1, 16))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("VM nokvm did not start: KVM is not available: "),
        "{message}"
    );
    assert!(
        message.contains("no-kvm-here does not exist: load the kvm module"),
        "{message}"
    );
}

#[test]
fn cpu_limits_use_cgroup_v2_or_say_why_they_cannot() {
    if !kvm_present("the VM lifecycle tests") {
        return;
    }
    let host = Host::new();
    let mut config = host.vm_config("limited", 1, 16);
    config.cpu_weight = Some(50);
    config.cpu_limit_percent = Some(25);
    let root = Path::new(hypervisor_shim::cgroup::DEFAULT_ROOT);
    match hypervisor_shim::cgroup::cpu_unsupported(root) {
        Some(why) => {
            let err = host.supervisor.start(&config).unwrap_err();
            assert_eq!(err.to_string(), why);
            assert!(why.contains("unsupported"), "{why}");
            eprintln!("NOT RUN on this host (no cgroup v2 cpu controller): the cgroup itself");
        }
        None => {
            let vm = host.supervisor.start(&config).unwrap();
            let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", vm.pid())).unwrap();
            assert!(cgroup.contains("/cimvirt/limited"), "{cgroup}");
            let dir = root.join("cimvirt/limited");
            assert_eq!(
                std::fs::read_to_string(dir.join("cpu.max")).unwrap().trim(),
                "25000 100000"
            );
            if hypervisor_shim::cgroup::memory_unsupported(root).is_none() {
                let max = std::fs::read_to_string(dir.join("memory.max")).unwrap();
                assert_eq!(
                    max.trim(),
                    hypervisor_shim::cgroup::memory_max_for(16 << 20).to_string()
                );
            }
            wait_heartbeats_advance(&vm);
            vm.call(&Request::Stop).unwrap();
        }
    }
}
