//! The wire readers' byte searches: the crate's one SWAR helper, [`crate::swar`].

pub(crate) use crate::swar::{find_byte, find_either};
