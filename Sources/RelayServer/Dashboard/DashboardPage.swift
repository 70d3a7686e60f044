import Foundation
import RelayCore

/// What the dashboard shows, read from the store for one page view.
struct DashboardSnapshot: Sendable {
    struct Component: Sendable {
        let appid: String
        let ticketReceivedAt: Date?
        let tokenExpiresAt: Date?
    }

    let now: Date
    let queue: QueueStats
    let components: [Component]
    let authorizers: [Authorizer]
    let subscriptions: [Subscription]
    /// This node's circuit breakers, by subscription id (those it delivers to).
    let circuits: [String: CircuitBreaker.Snapshot]
    let events: [(event: RelayEvent, deliveries: [DeliveryRecord])]
    /// Failed (retrying) and dead deliveries, newest first.
    let troubled: [DeliveryRecord]
}

/// The dashboard's HTML: plain server-rendered tables and forms, no script. Every value from the
/// store or WeChat (names, ids, types) is escaped.
enum DashboardPage {
    static let maxAuthorizers = 200

    static func signIn(failed: Bool, throttled: Bool = false) -> String {
        page(title: "WeChat Relay — sign in", body: """
            \(failed ? #"<p class="bad">That is not the admin token.</p>"# : "")
            \(throttled ? #"<p class="bad">Too many wrong tokens were tried; sign-in is paused for a few seconds.</p>"# : "")
            <form method="post" action="/dashboard/sign-in">
            <label>Admin token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
            <button>Sign in</button>
            </form>
            <p class="quiet">The token is <code>admin.token</code> in relay.yml. Signing in sets a cookie for 12 hours.</p>
            """)
    }

    /// A subscription's unfinished deliveries and how long the oldest has waited.
    static func waiting(_ backlog: QueueStats?, now: Date) -> String {
        guard let backlog, backlog.depth > 0 else { return cell("0") }
        return cell("\(backlog.depth)" + (backlog.oldestPendingCreatedAt.map { ", oldest \(age(now.timeIntervalSince($0)))" } ?? ""))
    }

    /// A subscription's delivering state on this node, from its circuit breaker.
    static func circuit(_ circuit: CircuitBreaker.Snapshot?) -> String {
        guard let circuit else { return cell("—") }
        if circuit.open {
            let next = circuit.nextProbe.map { "next probe \(time($0))" } ?? "a probe is out"
            return "<span class=\"bad\">" + HTML.escape("failing (\(circuit.failedInARow) in a row): one at a time, \(next)") + "</span>"
        }
        return cell(circuit.failedInARow == 0 ? "ok" : "\(circuit.failedInARow) failed in a row")
    }

    static func overview(_ s: DashboardSnapshot, notice: String?) -> String {
        let oldest = s.queue.oldestPendingCreatedAt.map { age(s.now.timeIntervalSince($0)) } ?? "—"
        // A large platform has thousands of authorizers; the page shows the latest.
        let shown = s.authorizers.sorted { $0.authorizedAt > $1.authorizedAt }.prefix(maxAuthorizers)
        return page(title: "WeChat Relay", body: """
            <form method="post" action="/dashboard/sign-out" class="right"><button>Sign out</button></form>
            \(notice.map { "<p class=\"notice\">\(HTML.escape($0))</p>" } ?? "")
            <h2>Queue</h2>
            <p><b>\(s.queue.depth)</b> deliveries not finished; the oldest waiting for \(oldest).</p>
            <h2>Components</h2>
            \(table(["AppID", "ticket received", "access token expires"], s.components.map { c in
                [cell(c.appid), cell(c.ticketReceivedAt.map { "\(age(s.now.timeIntervalSince($0))) ago" } ?? "no ticket yet"),
                 cell(c.tokenExpiresAt.map(time) ?? "—")]
            }))
            <h2>Authorizers (\(s.authorizers.count))</h2>
            \(table(["AppID", "name", "type", "status", "component", "authorized"], shown.map { a in
                [cell(a.appid), cell(a.name ?? "—"), cell(a.type ?? "—"), cell(a.status.rawValue), cell(a.componentAppid), cell(time(a.authorizedAt))]
            }))
            \(s.authorizers.count > shown.count ? "<p class=\"quiet\">The \(shown.count) most recent; all of them: <code>GET /v1/authorizers</code>.</p>" : "")
            <h2>Subscriptions</h2>
            \(table(["id", "url", "AppIDs", "events", "status", "source", "waiting", "delivering", "replay"], s.subscriptions.map { sub in
                [cell(sub.id), cell(sub.url), cell(sub.appids.joined(separator: ", ")), cell(sub.events.joined(separator: ", ")),
                 cell(sub.status.rawValue + (sub.reply ? ", reply" : "") + (sub.ordered ? ", ordered" : "")), cell(sub.source.rawValue),
                 waiting(s.queue.bySubscription[sub.id], now: s.now),
                 circuit(s.circuits[sub.id]),
                 """
                 <form method="post" action="/dashboard/subscriptions/\(HTML.escape(sub.id))/replay">
                 last <input type="number" name="hours" min="1" max="720" value="1" size="3"> h <button>Replay</button></form>
                 """]
            }))
            <h2>Failing and dead deliveries</h2>
            \(table(["delivery", "event", "subscription", "status", "attempts", "next attempt", ""], s.troubled.map { d in
                [cell(d.id), cell(d.eventId), cell(d.subscriptionId), cell(d.status.rawValue), cell(String(d.attemptCount)),
                 cell(d.nextAttemptAt.map(time) ?? "—"),
                 "<form method=\"post\" action=\"/dashboard/deliveries/\(HTML.escape(d.id))/retry\"><button>Retry</button></form>"]
            }))
            <h2>Recent events</h2>
            \(table(["received", "event", "type", "AppID", "deliveries"], s.events.map { e in
                [cell(time(e.event.receivedAt)), cell(e.event.id), cell(e.event.type), cell(e.event.appid),
                 cell(e.deliveries.map { "\($0.subscriptionId): \($0.status.rawValue)" }.joined(separator: ", "))]
            }))
            """)
    }

    private static func cell(_ text: String) -> String { HTML.escape(text) }

    /// `rows` hold HTML already escaped cell by cell.
    private static func table(_ headings: [String], _ rows: [[String]]) -> String {
        guard !rows.isEmpty else { return "<p class=\"quiet\">None.</p>" }
        let head = headings.map { "<th>\(HTML.escape($0))</th>" }.joined()
        let body = rows.map { "<tr>" + $0.map { "<td>\($0)</td>" }.joined() + "</tr>" }.joined(separator: "\n")
        return "<table><thead><tr>\(head)</tr></thead><tbody>\n\(body)\n</tbody></table>"
    }

    private static func time(_ date: Date) -> String { Timestamp.iso8601(date) }

    static func age(_ seconds: TimeInterval) -> String {
        let s = max(0, Int(seconds))
        return s < 120 ? "\(s) s" : s < 7200 ? "\(s / 60) min" : s < 172_800 ? "\(s / 3600) h" : "\(s / 86400) days"
    }

    private static func page(title: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(HTML.escape(title))</title>
        <style>body{font-family:system-ui,sans-serif;margin:1.5rem;line-height:1.4}table{border-collapse:collapse;font-size:.9rem}
        th,td{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}form{display:inline}
        .right{float:right}.quiet{color:#666}.bad{color:#b00}.notice{background:#eef8ee;padding:.5rem}</style>
        </head><body><h1>\(HTML.escape(title))</h1>
        \(body)
        </body></html>
        """
    }
}
