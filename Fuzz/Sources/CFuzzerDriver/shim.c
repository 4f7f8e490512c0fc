// CFuzzerDriver only declares libFuzzer's driver (include/CFuzzerDriver.h); a C target needs one source.
