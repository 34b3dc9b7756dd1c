//! Where guest code runs: a tokio runtime of its own, never the host's.
//!
//! Guest code is untrusted computation. On the host's async threads, a plugin computing
//! for its whole call limit would hold a thread that serves HTTP, claims and finishes runs
//! and ticks schedules; one such plugin per core would freeze the host. So guest work
//! (plugin calls and deliveries, `register`, task runs, `definitions`) runs here, and the
//! host's side only waits for it:
//!
//! - the pool has as many threads as the machine has cores (`FLUID_GUEST_THREADS` to
//!   change it), running at a lower OS priority (nice 10), so the host's threads win the
//!   CPU whenever both want it;
//! - guests yield to the pool on every epoch tick (see `actor` and `tasks`), so a spinning
//!   guest takes turns with the others instead of holding a pool thread for its whole
//!   call limit;
//! - a short call (a task run, `register`) starts on the caller's thread and moves to the
//!   pool at its first yield ([`run`]): a thread hop would cost more than most runs;
//! - every poll of a guest's future is metered in thread CPU time ([`Metered`]), charged
//!   to the plugin or task component it runs for.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// Niceness of the guest threads: below the host's, so guests get what the host leaves.
const NICE: i32 = 10;

fn handle() -> &'static tokio::runtime::Handle {
    static POOL: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::env::var("FLUID_GUEST_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("fluid-guest")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("cannot start the guest thread pool");
        let handle = rt.handle().clone();
        // The pool lives as long as the process; its runtime is never dropped.
        std::mem::forget(rt);
        handle
    })
}

/// Lowers the calling thread's scheduling priority (Linux: niceness is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; failure only leaves the
    // priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
    }
}

/// Runs guest work `fut` and waits for it: its first slice here, the rest on the guest pool.
///
/// Most guest calls end within microseconds, and a hop to another thread and back costs
/// tens of them, so the first poll happens on the caller's thread. A guest yields at every
/// epoch tick (and whenever it waits on a host call): if it has not finished by then, it
/// is moved to the pool and the caller only waits. So guest code holds a host thread for
/// at most one tick per call, however long it computes.
pub async fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut fut = Box::pin(fut);
    if let Poll::Ready(v) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return v;
    }
    // Dropped (a timed-out or cancelled run), the caller takes the guest work with it:
    // left running on the pool, a guest parked in a host call would hold its instance for ever.
    let mut task = AbortOnDrop(handle().spawn(fut));
    match (&mut task.0).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("guest pool task cancelled: {e}"),
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts `fut` on the guest pool (a plugin's actor loop lives there for good).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(fut)
}

/// Runs `f` on a thread of its own at the guest pool's low priority (compiling a
/// component: long, CPU-bound work a file chose) and hands back its result. The thread
/// finishes even if nobody waits any more.
pub fn off_host<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> tokio::sync::oneshot::Receiver<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
        lower_priority();
        let _ = tx.send(f());
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a thread");
    }
    rx
}

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// A future whose polls are metered: the thread CPU time each one takes is added to
/// `into` (host calls made from inside the guest included: they run on its behalf).
pub struct Metered<'a, F> {
    fut: Pin<Box<F>>,
    into: &'a AtomicU64,
}

impl<'a, F: Future> Metered<'a, F> {
    /// `fut`, its CPU time added to `into` on every poll.
    pub fn new(fut: F, into: &'a AtomicU64) -> Self {
        Metered { fut: Box::pin(fut), into }
    }
}

impl<F: Future> Future for Metered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = thread_cpu_ns();
        let out = self.fut.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        self.into.fetch_add(spent, Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn guest_work_dropped_by_its_caller_stops_on_the_pool() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let parked = run(async move {
            let _flag = flag;
            tokio::task::yield_now().await;
            std::future::pending::<()>().await
        });
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), parked).await.is_err());
        for _ in 0..200 {
            if dropped.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the guest work still holds what it owns after its caller gave up");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn guest_work_starts_here_moves_to_the_pool_at_its_first_yield_and_is_metered() {
        let caller = std::thread::current().id();
        let short = run(async { std::thread::current().id() }).await;
        assert_eq!(short, caller, "work that never yields ends where it started");
        let cpu = std::sync::Arc::new(AtomicU64::new(0));
        let c = cpu.clone();
        let (thread, name) = run(async move {
            Metered::new(
                async {
                    // As a guest does at an epoch tick.
                    tokio::task::yield_now().await;
                    // 20 ms of this thread's CPU, however long that takes on a busy machine.
                    let start = thread_cpu_ns();
                    let mut n = 0u64;
                    while thread_cpu_ns() - start < 20_000_000 {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                    (std::thread::current().id(), std::thread::current().name().map(str::to_string))
                },
                &c,
            )
            .await
        })
        .await;
        assert_ne!(thread, caller);
        assert_eq!(name.as_deref(), Some("fluid-guest"));
        let ms = cpu.load(Ordering::Relaxed) / 1_000_000;
        assert!((20..2000).contains(&ms), "20 ms of CPU metered as {ms} ms");
    }
}
