//! The process's tokio runtime: built lazily, rebuilt after `fork()`.
//!
//! A forked child inherits the parent's runtime object but none of its worker
//! threads, so every entry point asks for the runtime through `handle()`, which
//! compares the pid it was built in with the current one. The parent's stale
//! runtime is leaked in the child on purpose: dropping it would try to join
//! threads that do not exist there.

use std::sync::{Arc, Mutex};

use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The current process's runtime, building it on first use (or after a fork).
pub fn runtime() -> Arc<Runtime> {
    let pid = std::process::id();
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = guard.as_ref() {
        if *owner == pid {
            return Arc::clone(rt);
        }
    }
    if let Some((_, stale)) = guard.take() {
        std::mem::forget(stale);
    }
    let rt = Arc::new(
        Builder::new_multi_thread()
            // Token fetches are few and I/O bound; two workers are plenty and
            // keep the footprint small inside agent processes.
            .worker_threads(2)
            .thread_name("adk-token-exchange")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime (out of threads or memory?)"),
    );
    *guard = Some((pid, Arc::clone(&rt)));
    rt
}

/// A handle to the current process's runtime.
pub fn handle() -> Handle {
    runtime().handle().clone()
}
