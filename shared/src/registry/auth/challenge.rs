//! `Www-Authenticate` challenges (to be written).
