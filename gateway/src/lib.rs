//! Penghubung: the regional Sistem Penghubung Layanan gateway.

pub mod catalog;
pub mod evidence;
pub mod identity;
