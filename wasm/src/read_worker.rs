//! One dedicated worker per page that reads the user's files for seeding: `Blob.slice` is a
//! synchronous call into the browser, and while a transfer keeps the browser busy each one
//! blocked the seeding tab for 2.5 ms or more, the largest cost of seeding (a profile of a
//! 100 MiB page-to-page transfer: `slice` 1.7-2.2 s of the seeding tab's main thread; none with
//! the worker). Where workers or `blob:` worker scripts (a content security policy) are not
//! available, reads run on the page's thread as before.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::store::StoreError;
use crate::util;

/// The worker's script: reads `blob.slice(start, end)`. Replies carry the request's `id`, and
/// `error` when the read failed.
const READ_WORKER_JS: &str = r#"
self.onmessage = async ({ data: m }) => {
  try {
    const buf = await m.blob.slice(m.start, m.end).arrayBuffer()
    self.postMessage({ id: m.id, buf }, [buf])
  } catch (e) {
    self.postMessage({ id: m.id, error: String((e && e.message) || e) })
  }
}
"#;

/// A reply: the message, or why the worker could not answer (it failed to start or died).
type Reply = Result<JsValue, String>;

/// The page's reading worker.
struct ReadWorker {
    worker: web_sys::Worker,
    pending: Rc<RefCell<HashMap<u32, oneshot::Sender<Reply>>>>,
    next_id: Cell<u32>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

thread_local! {
    /// `None` until first used; then the worker, or `None` inside when there is none.
    static WORKER: RefCell<Option<Option<Rc<ReadWorker>>>> = const { RefCell::new(None) };
}

/// The worker, started on first use; `None` where workers cannot run.
fn worker() -> Option<Rc<ReadWorker>> {
    WORKER.with(|w| {
        w.borrow_mut()
            .get_or_insert_with(|| ReadWorker::start().map(Rc::new))
            .clone()
    })
}

/// Gives up the worker after it failed: later calls run on the page's thread.
fn give_up(why: &str) {
    util::warn(&format!(
        "the reading worker failed ({why}); reading files on the page instead"
    ));
    WORKER.with(|w| *w.borrow_mut() = Some(None));
}

impl ReadWorker {
    fn start() -> Option<ReadWorker> {
        let has_worker = Reflect::has(&util::global(), &"Worker".into()).unwrap_or(false);
        if !has_worker {
            return None;
        }
        let bag = web_sys::BlobPropertyBag::new();
        bag.set_type("text/javascript");
        let script = web_sys::Blob::new_with_str_sequence_and_options(
            &Array::of1(&READ_WORKER_JS.into()),
            &bag,
        )
        .ok()?;
        let url = web_sys::Url::create_object_url_with_blob(&script).ok()?;
        // The script's URL stays valid for the page's life (one small blob): the worker may
        // fetch it after this returns.
        let worker = web_sys::Worker::new(&url).ok()?;
        let pending: Rc<RefCell<HashMap<u32, oneshot::Sender<Reply>>>> = Rc::default();
        let p = pending.clone();
        let on_message =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                let data = e.data();
                let id = Reflect::get(&data, &"id".into())
                    .ok()
                    .and_then(|v| v.as_f64())
                    .map(|v| v as u32);
                if let Some(tx) = id.and_then(|id| p.borrow_mut().remove(&id)) {
                    let _ = tx.send(Ok(data));
                }
            });
        let p = pending.clone();
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
            let msg = util::worker_error(&e);
            for (_, tx) in p.borrow_mut().drain() {
                let _ = tx.send(Err(msg.clone()));
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        worker.set_onmessageerror(Some(on_error.as_ref().unchecked_ref()));
        Some(ReadWorker {
            worker,
            pending,
            next_id: Cell::new(0),
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    /// Posts `msg` (given an `id` here) and waits for its reply.
    async fn call(&self, msg: &Object) -> Reply {
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        Reflect::set(msg, &"id".into(), &JsValue::from(id))
            .map_err(|e| util::js_error_message(&e))?;
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        if let Err(e) = self.worker.post_message(msg) {
            self.pending.borrow_mut().remove(&id);
            return Err(util::js_error_message(&e));
        }
        rx.await
            .unwrap_or_else(|_| Err("the worker went away".into()))
    }
}

impl Drop for ReadWorker {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.set_onmessageerror(None);
        self.worker.terminate();
    }
}

/// The reply's `error`, if it has one.
fn reply_error(reply: &JsValue) -> Option<String> {
    Reflect::get(reply, &"error".into())
        .ok()
        .and_then(|e| e.as_string())
}

/// Bytes `start..end` of `blob`, read by the worker (or here, without one).
pub(crate) async fn read(
    blob: &web_sys::Blob,
    start: u64,
    end: u64,
) -> Result<Uint8Array, StoreError> {
    if let Some(w) = worker() {
        let msg = Object::new();
        let _ = Reflect::set(&msg, &"blob".into(), blob);
        let _ = Reflect::set(&msg, &"start".into(), &JsValue::from(start as f64));
        let _ = Reflect::set(&msg, &"end".into(), &JsValue::from(end as f64));
        match w.call(&msg).await {
            Ok(reply) => {
                if let Some(e) = reply_error(&reply) {
                    return Err(StoreError(e));
                }
                let buf = Reflect::get(&reply, &"buf".into())?;
                return Ok(Uint8Array::new(&buf));
            }
            Err(why) => give_up(&why),
        }
    }
    crate::store::read_blob(blob, start, end).await
}
