//! [`Small`], a short string on the stack, for the per-request strings of the hot path
//! (rate-limit identities and header values, cache keys): a few dozen bytes each, built and
//! dropped per request without touching the allocator.

/// A string of at most `N` bytes on the stack. Writing past its capacity fails and leaves it as
/// it was (the caller then does not use it); it never reallocates.
pub struct Small<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Small<N> {
    pub fn new() -> Self {
        Small {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `s`; `false` (and nothing appended) when it does not fit. The hot path's way of
    /// building a string: `write!` goes through `core::fmt`, several times the instructions.
    pub fn push(&mut self, s: &str) -> bool {
        std::fmt::Write::write_str(self, s).is_ok()
    }

    /// Appends an integer in decimal (`itoa`: no `core::fmt`).
    pub fn push_int(&mut self, n: impl itoa::Integer) -> bool {
        self.push(itoa::Buffer::new().format(n))
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this is always UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> Default for Small<N> {
    fn default() -> Self {
        Small::new()
    }
}

impl<const N: usize> std::fmt::Write for Small<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn small_strings_refuse_to_overflow() {
        let mut s = Small::<64>::new();
        assert!(write!(s, "ip:{}", std::net::Ipv4Addr::LOCALHOST).is_ok());
        assert_eq!(s.as_str(), "ip:127.0.0.1");
        assert!(s.write_str(&"x".repeat(60)).is_err());
        assert_eq!(
            s.as_str(),
            "ip:127.0.0.1",
            "a failed write leaves it as it was"
        );
        assert!(s.write_str(&"x".repeat(52)).is_ok(), "up to the last byte");
        assert_eq!(s.as_str().len(), 64);
        assert!(!s.push("x") && !s.push_int(7u8), "full: nothing more");
        let mut n = Small::<24>::new();
        assert!(n.push("r=") && n.push_int(u64::MAX - 1) && n.push(";"));
        assert_eq!(n.as_str(), "r=18446744073709551614;");
        assert!(!n.push_int(-5i64), "past the capacity");
    }
}
