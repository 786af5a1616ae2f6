//! A binary cache that exists, ours or Nix's: [`dir`] opens its files
//! beneath it and nowhere else; [`read`] reads and checks what it holds.

pub mod dir;
pub mod read;
