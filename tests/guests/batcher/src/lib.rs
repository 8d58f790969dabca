//! An SDK actor exported as batched (`export_actor!(Batcher, batched)`): the
//! runtime hands it runs of its queued messages in one `handle-messages`
//! call, and the SDK calls [`Actor::message`] for each. The batch tests
//! (`tests/it/batched.rs`) drive it.
//!
//! Its messages are raw bytes:
//! - 8 bytes `[key u32 LE][seq u32 LE]`: a sequenced message; it checks that
//!   each key's sequence numbers arrive in order (0, 1, 2, …);
//! - `echo…` (not 8 bytes long): sends the same bytes back to the sender
//!   (raw codec);
//! - `poison`: panics;
//! - `quit`: stops itself;
//! - `spin`: loops for ever (its CPU budget ends it);
//! - anything else: counted as other.
//!
//! Any request is answered with `[sequenced u64][out of order u64][other
//! u64][echoed u64]`, all LE.

use std::collections::HashMap;

use wasmshard_guest::{Actor, Address, Bytes, Codec, Ctx, Reply};

#[derive(Default)]
struct Batcher {
    /// The next sequence number expected per key.
    next: HashMap<u32, u32>,
    sequenced: u64,
    out_of_order: u64,
    other: u64,
    echoed: u64,
}

impl Actor for Batcher {
    type Config = Option<()>;
    type Message = Bytes;
    type Request = Bytes;
    type Reply = Bytes;

    fn init(_: &mut Ctx<Self>, _: Option<()>) -> Result<Self, String> {
        Ok(Batcher::default())
    }

    fn message(&mut self, ctx: &mut Ctx<Self>, from: Address, msg: Bytes) {
        let bytes = &msg.0[..];
        if let Ok(frame) = <[u8; 8]>::try_from(bytes) {
            let key = u32::from_le_bytes(frame[..4].try_into().unwrap());
            let seq = u32::from_le_bytes(frame[4..].try_into().unwrap());
            let next = self.next.entry(key).or_default();
            if seq != *next {
                self.out_of_order += 1;
            }
            *next = seq.wrapping_add(1);
            self.sequenced += 1;
        } else if bytes.starts_with(b"echo") {
            if ctx.send_with(Codec::Raw, from, &msg).is_ok() {
                self.echoed += 1;
            }
        } else if bytes == b"poison" {
            panic!("poisoned by {from}");
        } else if bytes == b"quit" {
            let me = ctx.me();
            ctx.stop(me).expect("an actor may stop itself");
        } else if bytes == b"spin" {
            let mut i = 0u64;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        } else {
            self.other += 1;
        }
    }

    fn request(&mut self, _: &mut Ctx<Self>, _: Address, _: Bytes, reply: Reply<Bytes>) {
        let mut out = Vec::with_capacity(32);
        for n in [self.sequenced, self.out_of_order, self.other, self.echoed] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let _ = reply.send(&Bytes(out));
    }
}

wasmshard_guest::export_actor!(Batcher, batched);
