//! A walk over any pickle's opcodes (protocols 0 to 5) that checks what a reader would size
//! from them, without running anything: every length prefix fits in the bytes that follow,
//! every memo index is below the pickle's length, the protocol is at most 5, and the pickle
//! ends with `STOP`. libtorch's own unpickler reserves memory for a length before it reads
//! the bytes (a 32 KB file announcing a 3.2 GB string made it allocate 3.2 GB) and sizes its
//! memo table from memo indices, so pickles it reads are walked first.

use super::PickleError;

/// Checks `data` as described in the module docs.
pub(crate) fn check_lengths(data: &[u8]) -> Result<(), PickleError> {
    let mut walk = Walk { data, pos: 0 };
    loop {
        let at = walk.pos;
        let fail = |reason: String| PickleError::Invalid { offset: at, reason };
        let op = walk
            .fixed::<1>()
            .map_err(|_| fail("it ends without the STOP opcode: truncated".into()))?[0];
        match op {
            b'.' => return Ok(()),
            0x80 => {
                let [proto] = walk.fixed().map_err(fail)?;
                if proto > 5 {
                    return Err(fail(format!("pickle protocol {proto} is not supported")));
                }
            }
            // No argument.
            b'('
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | b'R'
            | b'a'
            | b'b'
            | b'd'
            | b'}'
            | b'e'
            | b'l'
            | b']'
            | b'o'
            | b's'
            | b't'
            | b')'
            | b'u'
            | b'Q'
            | 0x81
            | 0x85..=0x89
            | 0x8f..=0x94
            | 0x97
            | 0x98 => {}
            // Fixed-size arguments.
            b'K' | 0x82 => walk.skip(1).map_err(fail)?,
            b'M' | 0x83 => walk.skip(2).map_err(fail)?,
            b'J' | 0x84 => walk.skip(4).map_err(fail)?,
            b'G' | 0x95 => walk.skip(8).map_err(fail)?,
            // Memo indices.
            b'h' | b'q' => {
                let [i] = walk.fixed().map_err(fail)?;
                walk.memo(i.into()).map_err(fail)?;
            }
            b'j' | b'r' => {
                let i = u32::from_le_bytes(walk.fixed().map_err(fail)?);
                walk.memo(i.into()).map_err(fail)?;
            }
            // Length-prefixed data.
            b'U' | b'C' | 0x8a | 0x8c => {
                let [n] = walk.fixed().map_err(fail)?;
                walk.skip(n.into()).map_err(fail)?;
            }
            b'T' | b'X' | b'B' | 0x8b => {
                let n = u32::from_le_bytes(walk.fixed().map_err(fail)?);
                walk.skip(n.into()).map_err(fail)?;
            }
            0x8d | 0x8e | 0x96 => {
                let n = u64::from_le_bytes(walk.fixed().map_err(fail)?);
                walk.skip(n).map_err(fail)?;
            }
            // Newline-terminated text arguments (memo indices in text are bounded by the
            // line's own length, which lies inside the pickle).
            b'I' | b'L' | b'F' | b'S' | b'V' | b'g' | b'p' | b'P' => walk.line().map_err(fail)?,
            b'c' | b'i' => {
                walk.line().map_err(fail)?;
                walk.line().map_err(fail)?;
            }
            other => return Err(fail(format!("opcode 0x{other:02x} is not a pickle opcode"))),
        }
    }
}

struct Walk<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Walk<'_> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        match usize::try_from(n) {
            Ok(n) if n <= self.left() => {
                self.pos += n;
                Ok(())
            }
            _ => Err(format!(
                "a length of {n} bytes runs past the end of the pickle ({} bytes left): \
                 truncated or forged",
                self.left()
            )),
        }
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let start = self.pos;
        self.skip(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.data[start..self.pos]);
        Ok(out)
    }

    fn memo(&self, index: u64) -> Result<(), String> {
        if index >= self.data.len() as u64 {
            return Err(format!(
                "memo index {index} is beyond what a pickle of {} bytes can hold",
                self.data.len()
            ));
        }
        Ok(())
    }

    fn line(&mut self) -> Result<(), String> {
        match self.data[self.pos..].iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.pos += end + 1;
                Ok(())
            }
            None => Err("a text argument is not terminated by a newline".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_whole_pickles_and_refuses_forged_lengths() {
        // {'a': 'bc'} at protocol 2, as Python writes it.
        let good = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01X\x02\x00\x00\x00bcq\x02s.";
        assert_eq!(check_lengths(good), Ok(()));
        // The same string announcing 3.2 GB.
        let mut forged = good.to_vec();
        forged[6..10].copy_from_slice(&3_200_000_000u32.to_le_bytes());
        let Err(PickleError::Invalid { offset, reason }) = check_lengths(&forged) else {
            panic!("accepted");
        };
        assert_eq!(offset, 5);
        assert!(reason.contains("3200000000 bytes runs past"), "{reason}");
        // A memo index no pickle of this size can reach, a truncation, an unknown opcode.
        assert!(check_lengths(b"\x80\x02Nr\xff\xff\xff\x00.").is_err());
        assert!(check_lengths(&good[..good.len() - 1]).is_err());
        assert!(check_lengths(b"\x80\x02\xff.").is_err());
        assert!(check_lengths(b"\x80\x06N.").is_err());
        // Protocol 0 text opcodes.
        assert_eq!(
            check_lengths(b"(lp0\nI1\naccollections\nOrderedDict\n."),
            Ok(())
        );
    }
}
