#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// This process's CPU time, memory, open files and start time, read from `/proc` when
/// `/metrics` is scraped: what operators alert on beside the relay's own figures (open files
/// near their limit stop the relay accepting WeChat's connections).
struct ProcessFigures: Equatable {
    var cpuSeconds: Double
    var residentBytes: Int
    var openFiles: Int
    var maxOpenFiles: Int
    /// Unix seconds.
    var startTime: Double

    /// This process's figures; nil where `/proc` cannot be read (not Linux).
    static func current() -> ProcessFigures? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let system = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let open = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return nil }
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return parse(stat: stat, system: system, ticksPerSecond: Double(sysconf(Int32(_SC_CLK_TCK))), pageSize: Int(sysconf(Int32(_SC_PAGESIZE))),
                     openFiles: open.count, maxOpenFiles: Int(clamping: limit.rlim_cur))
    }

    /// Figures from `/proc/self/stat` and `/proc/stat`'s `btime` (proc(5)).
    static func parse(stat: String, system: String, ticksPerSecond: Double, pageSize: Int, openFiles: Int, maxOpenFiles: Int) -> ProcessFigures? {
        // The command name may hold spaces and parentheses: the fields start after the last ")".
        guard let end = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        // fields[0] is the state (field 3): utime is field 14, stime 15, starttime 22, rss 24.
        guard fields.count > 21, let user = Double(fields[11]), let kernel = Double(fields[12]),
              let started = Double(fields[19]), let pages = Int(fields[21]),
              let bootLine = system.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
              let boot = Double(bootLine.dropFirst(6).trimmingCharacters(in: .whitespaces)) else { return nil }
        return ProcessFigures(cpuSeconds: (user + kernel) / ticksPerSecond, residentBytes: pages * pageSize, openFiles: openFiles,
                              maxOpenFiles: maxOpenFiles, startTime: boot + started / ticksPerSecond)
    }
}
