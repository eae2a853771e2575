//! `pause`: the first process of a pod sandbox. It holds the sandbox's namespaces open for the
//! pod's containers, reaps the zombies that end up as its children when the pod shares a PID
//! namespace, and exits promptly on SIGTERM or SIGINT (as PID 1 it gets no default handlers,
//! so without its own a stop would wait out the runtime's grace period).
//!
//! Built as a static binary and packed into a `FROM scratch` image (see the Makefile).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_child(_: libc::c_int) {}

fn install(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: the handlers only touch an atomic; sigaction is given a zeroed, valid struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            eprintln!("pause: installing a handler for signal {signal} failed");
            std::process::exit(1);
        }
    }
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("pause: warning: not running as PID 1");
    }
    install(libc::SIGTERM, on_stop);
    install(libc::SIGINT, on_stop);
    install(libc::SIGCHLD, on_child);
    while !STOP.load(Ordering::SeqCst) {
        // SAFETY: pause() only blocks until a signal arrives.
        unsafe {
            libc::pause();
        }
        // Reap every child that ended, without blocking.
        loop {
            // SAFETY: waitpid with a null status pointer and WNOHANG is always valid.
            let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
        }
    }
}
