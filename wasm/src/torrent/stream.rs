//! Reading a file while it downloads: `file.stream({ start, end })` gives a `ReadableStream`
//! whose reads wait for the pieces they need; while it is open its position and a little
//! ahead are fetched first (the session's reader windows). Memory stays bounded: the stream
//! holds one piece at a time and the consumer's queue (one chunk).

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use webtorrent_core::piece::PieceIndex;
use webtorrent_core::session::ReaderWindow;

use super::{drive, Handle, Store};
use crate::util::now;

impl super::Inner {
    /// Wakes the readers waiting for piece `p`.
    pub(super) fn piece_arrived(&mut self, p: u32) {
        for w in self.piece_waiters.remove(&p).unwrap_or_default() {
            let _ = w.send(());
        }
    }
}

/// Waits until piece `piece` is verified and stored.
async fn wait_piece(h: &Handle, piece: u32) -> Result<(), String> {
    let rx = {
        let mut t = h.borrow_mut();
        if t.destroyed {
            return Err("the torrent was destroyed".into());
        }
        if t.session.has_piece(piece) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        t.piece_waiters.entry(piece).or_default().push(tx);
        rx
    };
    rx.await
        .map_err(|_| "the torrent was destroyed".to_string())
}

/// A whole verified piece.
async fn read_piece(h: &Handle, piece: PieceIndex) -> Result<Bytes, String> {
    let (reader, start, len) = {
        let t = h.borrow();
        let meta = t.meta().ok_or("no metadata")?;
        let layout = meta.info.layout;
        let (start, len) = (layout.piece_offset(piece), layout.piece_len(piece));
        match &t.store {
            Some(Store::Memory(buf)) => {
                return buf
                    .read(start, len as usize)
                    .map(Bytes::from)
                    .map_err(|e| e.to_string());
            }
            Some(s) => (s.reader(), start, u64::from(len)),
            None => return Err("no storage".into()),
        }
    };
    match reader.read(piece, start, len).await {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(format!("piece {piece} could not be read")),
        Err(e) => Err(e.to_string()),
    }
}

/// One open stream over bytes `span` of the torrent.
struct State {
    h: Handle,
    id: u64,
    /// Next byte to give, and the end (torrent offsets).
    pos: u64,
    end: u64,
    /// Moves the window set in the session.
    window: ReaderWindow,
    closed: bool,
}

impl State {
    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let res = self
            .h
            .borrow_mut()
            .session
            .set_reader_window(now(), self.id, None);
        if res.is_ok() {
            drive(&self.h);
        }
    }
}

/// The next chunk of a stream (up to the end of the piece at its position), moving its
/// window first; `None` at the end.
async fn next_chunk(state: &Rc<RefCell<State>>) -> Result<Option<Uint8Array>, String> {
    let (h, pos, end, piece, window) = {
        let mut s = state.borrow_mut();
        if s.closed || s.pos >= s.end {
            return Ok(None);
        }
        let h = s.h.clone();
        let meta = h.borrow().meta().ok_or("no metadata")?;
        let pl = u64::from(meta.info.layout.piece_length());
        let piece = s.pos / pl;
        let (pos, end) = (s.pos, s.end);
        let window = s.window.update(pos, end, pl);
        (h, pos, end, piece, window)
    };
    if let Some(w) = window {
        let id = state.borrow().id;
        let res = h.borrow_mut().session.set_reader_window(now(), id, Some(w));
        res.map_err(|e| e.to_string())?;
        drive(&h);
    }
    let index = u32::try_from(piece).map_err(|_| "offset out of range")?;
    wait_piece(&h, index).await?;
    let p = {
        let t = h.borrow();
        let meta = t.meta().ok_or("no metadata")?;
        meta.info.layout.piece(index).map_err(|e| e.to_string())?
    };
    let data = read_piece(&h, p).await?;
    let (piece_start, plen) = {
        let meta = h.borrow().meta().ok_or("no metadata")?;
        (meta.info.layout.piece_offset(p), data.len() as u64)
    };
    let from = pos - piece_start;
    let to = (end - piece_start).min(plen);
    if from >= to {
        return Err("storage returned a short piece".into());
    }
    state.borrow_mut().pos = piece_start + to;
    Ok(Some(Uint8Array::from(&data[from as usize..to as usize])))
}

/// A `ReadableStream` of bytes `span` of the torrent (a file's range).
pub(crate) fn readable(h: Handle, span: Range<u64>) -> Result<web_sys::ReadableStream, JsValue> {
    let id = {
        let mut t = h.borrow_mut();
        t.next_reader += 1;
        t.next_reader
    };
    let state = Rc::new(RefCell::new(State {
        h,
        id,
        pos: span.start,
        end: span.end,
        window: ReaderWindow::default(),
        closed: false,
    }));
    let pull_state = state.clone();
    let pull = Closure::<dyn FnMut(JsValue) -> js_sys::Promise>::new(move |controller: JsValue| {
        let state = pull_state.clone();
        future_to_promise(async move {
            let call = |name: &str, args: &js_sys::Array| -> Result<(), JsValue> {
                let f: js_sys::Function = Reflect::get(&controller, &name.into())?.dyn_into()?;
                f.apply(&controller, args)?;
                Ok(())
            };
            match next_chunk(&state).await {
                Ok(Some(chunk)) => call("enqueue", &js_sys::Array::of1(&chunk))?,
                Ok(None) => {
                    state.borrow_mut().close();
                    call("close", &js_sys::Array::new())?;
                }
                Err(e) => {
                    state.borrow_mut().close();
                    let err = js_sys::Error::new(&e);
                    call("error", &js_sys::Array::of1(&err))?;
                }
            }
            Ok(JsValue::UNDEFINED)
        })
    });
    let cancel_state = state;
    let cancel = Closure::<dyn FnMut(JsValue)>::new(move |_reason: JsValue| {
        cancel_state.borrow_mut().close();
    });
    let source = Object::new();
    Reflect::set(&source, &"pull".into(), &pull.into_js_value())?;
    Reflect::set(&source, &"cancel".into(), &cancel.into_js_value())?;
    // The default strategy queues one chunk ahead: memory stays at about a piece whatever
    // the file's size.
    web_sys::ReadableStream::new_with_underlying_source(&source)
}
