//! Onion cells: 512-byte link cells and relay messages (filled in by the onion-routing work).
