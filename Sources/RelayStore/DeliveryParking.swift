/// Parking, on both stores: an ordered subscription's due deliveries that wait behind their
/// user's unfinished one get, when a claim walks past them, their next attempt moved to the
/// earliest time that one can be over (its lease's end while claimed, else its own next attempt).
///
/// Claims then stop walking them. A chat bot that was down left every user's later events
/// waiting, and every claim — one per push to the bot and per attempt — stepped over all of them:
/// 50 ms at 50,000 on SQLite, on the writer, blocking the intake meanwhile; 250 ms on PostgreSQL.
/// When the earlier delivery is delivered or dead, the next one of its user is due at once; a
/// parked one whose wait outlives its bound is walked and parked again then. Order does not rest
/// on this: a claim still checks it, so a bound that comes too early costs a walk, never order.
enum DeliveryParking {
    /// At most this many parked by one claim, so that its transaction holds SQLite's writer for
    /// a few milliseconds; the rest are parked by the next claims.
    static let batch = 4096
}
