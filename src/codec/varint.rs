//! LEB128 varints and zigzag, shared by the blob header and the trajectory layout.

use super::CodecError;

/// Appends `v` as an unsigned LEB128 varint (1 byte below 128, at most 10).
#[inline]
pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes that [`put`] writes for `v`.
#[inline]
pub(crate) fn len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads an unsigned LEB128 varint at `*pos`, advancing it. `what` names the field for errors.
#[inline]
pub(crate) fn get(buf: &[u8], pos: &mut usize, what: &'static str) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or(CodecError::Truncated { what })?;
        *pos += 1;
        // The tenth byte may only carry the top bit of a u64.
        if shift == 63 && byte > 1 {
            return Err(CodecError::MalformedHeader("varint overflows 64 bits"));
        }
        v |= u64::from(byte & 0x7F) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(CodecError::MalformedHeader("varint longer than 10 bytes"))
}

/// Maps signed to unsigned so small magnitudes of either sign stay short.
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges_and_rejects_overlong() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            put(&mut buf, v);
            assert_eq!(len(v), buf.len());
            let mut pos = 0;
            assert_eq!(get(&buf, &mut pos, "t").unwrap(), v);
            assert_eq!(pos, buf.len());
            // Every strict prefix is truncated.
            for cut in 0..buf.len() {
                assert_eq!(get(&buf[..cut], &mut 0, "t"), Err(CodecError::Truncated { what: "t" }));
            }
        }
        assert_eq!([0u64, 1, 127, 128, 16_384].map(vec_len), [1, 1, 1, 2, 3]);
        let overflow = [0xFF; 9].iter().copied().chain([0x02]).collect::<Vec<u8>>();
        assert!(matches!(get(&overflow, &mut 0, "t"), Err(CodecError::MalformedHeader(_))));
        let too_long = [0x80u8; 11];
        assert!(matches!(get(&too_long, &mut 0, "t"), Err(CodecError::MalformedHeader(_))));
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!([0i64, -1, 1, -2, 2].map(zigzag), [0, 1, 2, 3, 4]);
    }

    fn vec_len(v: u64) -> usize {
        let mut buf = Vec::new();
        put(&mut buf, v);
        buf.len()
    }
}
