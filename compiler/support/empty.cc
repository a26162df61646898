// Keeps every ptc library non-empty while its folder is being filled.
