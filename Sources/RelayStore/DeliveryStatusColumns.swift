import RelayCore

/// How both stores keep a delivery's status: a claim writes only the lease, so a leased pending
/// or failed delivery is the one being attempted and reads as `in_flight`. The Swift reading and
/// the SQL filter state that one rule, side by side, for both SQL dialects.
enum DeliveryStatusColumns {
    /// The status a row reads as, from its `status` column and whether `lease_owner` is set.
    static func status(stored: String, leased: Bool) -> DeliveryStatus {
        let stored = DeliveryStatus(rawValue: stored) ?? .pending
        return leased && (stored == .pending || stored == .failed) ? .inFlight : stored
    }

    /// The SQL condition for rows that read as `status`. (`in_flight` is also a stored status in
    /// SQLite databases written before claims kept only the lease.)
    static func condition(_ status: DeliveryStatus) -> String {
        switch status {
        case .inFlight: "(status = 'in_flight' OR (status IN ('pending', 'failed') AND lease_owner IS NOT NULL))"
        case .pending, .failed: "(status = '\(status.rawValue)' AND lease_owner IS NULL)"
        default: "status = '\(status.rawValue)'"
        }
    }
}
