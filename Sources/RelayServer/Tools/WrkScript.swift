import Foundation

/// A Lua script for [wrk](https://github.com/wg/wrk) that POSTs pre-signed pushes in turn, for
/// load from outside the relay's process (`relay push wrk-script`): `relay bench` runs its load
/// generator beside the servers, on the same cores, which is right for ratios and wrong for
/// measuring one deployed relay.
public enum WrkScript {
    /// The script: wrk's threads share the list out (given their number after `--`), one push per
    /// request, and start over at its end (pushes sent again are answered as duplicates).
    /// `partSize`: pushes per part of the list (two constants each).
    public static func render(_ pushes: [ComposedPush], comment: String, partSize: Int = 10_000) -> String {
        var lines = comment.split(separator: "\n", omittingEmptySubsequences: false).map { "-- " + $0 }
        // A Lua function holds at most 65,536 constants (LuaJIT, which wrk embeds), so the list
        // comes in parts, each a function of its own.
        lines.append("local parts = {}")
        for (index, push) in pushes.enumerated() {
            if index % partSize == 0 { lines.append("parts[#parts + 1] = function() return {") }
            lines.append("  {\(longString(push.uri)), \(longString(push.body))},")
            if index % partSize == partSize - 1 || index == pushes.count - 1 { lines.append("} end") }
        }
        lines.append(contentsOf: [
            "local pushes = {}",
            "for _, part in ipairs(parts) do",
            "  for _, push in ipairs(part()) do pushes[#pushes + 1] = push end",
            "end",
            "",
            "-- Threads number themselves in setup; the thread count comes after `--` on wrk's command",
            "-- line, and thread k of n sends pushes k+1, k+1+n, k+1+2n, ... so no two send the same one.",
            "local threads = 0",
            "function setup(thread)",
            "  thread:set(\"id\", threads)",
            "  threads = threads + 1",
            "end",
            "",
            "local first, step, position = 1, 1, 1",
            "function init(args)",
            "  step = tonumber(args[1]) or 1",
            "  first = (id or 0) % #pushes + 1",
            "  position = first - step",
            "end",
            "",
            "function request()",
            "  position = position + step",
            "  if position > #pushes then position = first end",
            "  local push = pushes[position]",
            "  return wrk.format(\"POST\", push[1], {[\"Content-Type\"] = \"text/xml\"}, push[2])",
            "end",
            "",
        ])
        return lines.joined(separator: "\n")
    }

    /// A Lua long string (`[==[…]==]`) with as many `=` as it takes for `text` not to close it,
    /// so nothing needs escaping (the XML holds `]]>`, the query `&` and `%`).
    public static func longString(_ text: String) -> String {
        var level = 0
        while text.contains("]" + String(repeating: "=", count: level) + "]") { level += 1 }
        let equals = String(repeating: "=", count: level)
        return "[\(equals)[\(text)]\(equals)]"
    }
}
