//! The payloads the test guest sends and checks, and the transform its responders
//! apply. Plain Rust with no dependencies: the integration tests include this same
//! file (`#[path]`), so the guest and the tests cannot disagree about it.

/// Longest payload the patterns produce; lengths cycle through `1..=MAX_LEN`.
pub(crate) const MAX_LEN: u32 = 300;

/// The length of payload number `seq`: `seq % 300 + 1`.
pub(crate) fn len(seq: u32) -> u32 {
    seq % MAX_LEN + 1
}

/// Byte `i` of payload number `seq`, whose length is `len`: a mix of all three, so
/// a payload shifted, truncated, swapped with another or partly overwritten is
/// caught.
pub(crate) fn byte(seq: u32, len: u32, i: u32) -> u8 {
    let mut x = seq.wrapping_mul(0x9E37_79B9)
        ^ len.wrapping_mul(0x85EB_CA6B)
        ^ i.wrapping_add(1).wrapping_mul(0xC2B2_AE35);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2C1B_3C6D);
    x ^= x >> 13;
    (x >> 24) as u8
}

/// Payload number `seq`: `len(seq)` bytes, byte `i` being `byte(seq, len, i)`.
pub(crate) fn payload(seq: u32) -> Vec<u8> {
    let len = len(seq);
    (0..len).map(|i| byte(seq, len, i)).collect()
}

/// Whether `bytes` is payload number `seq`, byte for byte.
pub(crate) fn is_payload(seq: u32, bytes: &[u8]) -> bool {
    let len = len(seq);
    bytes.len() == len as usize && bytes.iter().zip(0..).all(|(&b, i)| b == byte(seq, len, i))
}

/// FNV-1a, 32 bits.
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811C_9DC5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The responders' transform: the request's bytes reversed, then the FNV-1a
/// checksum of the request (4 bytes, little-endian). A reply is always 4 bytes
/// longer than its request, so a responder must build it in a fresh buffer.
pub(crate) fn transform(request: &[u8]) -> Vec<u8> {
    let mut reply = Vec::with_capacity(request.len() + 4);
    reply.extend(request.iter().rev());
    reply.extend_from_slice(&checksum(request).to_le_bytes());
    reply
}
