import BouncerCore

#if canImport(Glibc)
import Glibc
#endif

extension WallClock {
    /// The system's wall clock (`CLOCK_REALTIME`): the one the gateway runs on.
    public static let system = WallClock {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }
}
