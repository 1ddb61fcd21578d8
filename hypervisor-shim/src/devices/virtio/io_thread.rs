//! A device's I/O thread: an epoll loop (vmm-sys-util) over its queues' notification
//! eventfds (and the device's own sources, such as a tap), so that request processing never
//! runs on, or waits for, a vCPU thread.

use std::os::fd::{AsRawFd, RawFd};
use std::thread::JoinHandle;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// The device side of the loop.
pub trait QueueHandler: Send + 'static {
    /// Processes what the driver made available on queue `index`.
    fn process_queue(&mut self, index: usize);
    /// Handles readiness of the device's own source `index` (a tap, for a network device).
    fn process_source(&mut self, _index: usize) {}
}

/// The epoll token of the stop eventfd; queues use their index, sources start at
/// [`SOURCES`].
const STOP: u64 = u64::MAX;
const SOURCES: u64 = 1 << 32;

/// A running I/O thread; [`IoThread::stop`] ends it and gives the handler back.
pub struct IoThread<H> {
    stop: EventFd,
    thread: Option<JoinHandle<H>>,
}

impl<H: QueueHandler> IoThread<H> {
    /// Starts `handler` on a thread named `name`, woken by `events` (one per queue) and by
    /// input on `sources` (descriptors the handler owns, watched edge-triggered: the handler
    /// reads each until it would block, or until it has nowhere to put what it read). Every
    /// queue and source is processed once at the start: the driver may have queued requests,
    /// and the host sent input, while the device was stopped (a pause, a snapshot restore).
    pub fn spawn(
        name: String,
        events: Vec<EventFd>,
        sources: &[RawFd],
        mut handler: H,
    ) -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, STOP),
        )?;
        for (index, event) in events.iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                event.as_raw_fd(),
                EpollEvent::new(EventSet::IN, index as u64),
            )?;
        }
        for (index, fd) in sources.iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                *fd,
                EpollEvent::new(
                    EventSet::IN | EventSet::EDGE_TRIGGERED,
                    SOURCES + index as u64,
                ),
            )?;
        }
        let source_count = sources.len();
        let stop_event = stop.try_clone()?;
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device)
                .unwrap_or_else(|e| crate::sandbox::abort_unconfined(&e));
            for index in 0..events.len() {
                handler.process_queue(index);
            }
            for index in 0..source_count {
                handler.process_source(index);
            }
            let mut ready = vec![EpollEvent::default(); events.len() + source_count + 1];
            loop {
                let count = match epoll.wait(-1, &mut ready) {
                    Ok(count) => count,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::error!("I/O thread: epoll_wait: {e}");
                        return handler;
                    }
                };
                for event in &ready[..count] {
                    match event.data() {
                        STOP => return handler,
                        token if token >= SOURCES => {
                            handler.process_source((token - SOURCES) as usize)
                        }
                        index => {
                            let index = index as usize;
                            // Reading resets the count: one pass serves every notification.
                            let _ = events[index].read();
                            handler.process_queue(index);
                        }
                    }
                }
            }
        })?;
        Ok(IoThread {
            stop: stop_event,
            thread: Some(thread),
        })
    }

    /// Ends the loop after the request in hand and returns the handler (`None` if the thread
    /// panicked).
    pub fn stop(mut self) -> Option<H> {
        let _ = self.stop.write(1);
        self.thread.take()?.join().ok()
    }
}

impl<H> Drop for IoThread<H> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.stop.write(1);
            let _ = thread.join();
        }
    }
}
