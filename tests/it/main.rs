//! Integration tests: the public API driven with real WebAssembly.

mod batch;
mod batched;
mod bench;
mod capabilities;
mod children;
mod dead_letters;
mod deadlines;
mod forwarding;
mod fuzz;
mod guests;
mod isolation;
mod lifecycle;
mod loading;
mod manual;
mod messaging;
// The test guest's payloads and transform, shared with it (the guest uses all of
// it, the tests only part).
#[allow(dead_code)]
#[path = "../guests/roles/src/pattern.rs"]
mod pattern;
mod regressions;
mod requests;
mod sdk;
mod spawn;
mod storage;
mod supervision;
mod support;
mod timers;
mod topics;
mod traces;

/// Public types are shareable across threads as documented.
#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<wasmshard::Runtime>();
    send_sync::<wasmshard::Component>();
    send_sync::<wasmshard::Address>();
    send_sync::<wasmshard::Stats>();
    send_sync::<wasmshard::SendError>();
    send_sync::<wasmshard::Handle>();
}
