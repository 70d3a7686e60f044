import Foundation

/// How the stored config subscriptions change to match `relay.yml`: computed from both lists
/// here, applied by each store in one transaction.
public struct SubscriptionSyncPlan: Sendable, Equatable {
    public var inserts: [Subscription] = []
    public var updates: [Subscription] = []
    /// Ids of config subscriptions no longer configured (their unfinished deliveries are cancelled).
    public var deletes: [String] = []

    /// Throws `StoreError(.conflict)` when a configured id belongs to a subscription created
    /// through the API: config never takes one over.
    public init(configured: [Subscription], stored: [Subscription], generateSecret: () -> String = WebhookSigner.generateSecret) throws {
        for var subscription in configured {
            if let existing = stored.first(where: { $0.id == subscription.id }) {
                guard existing.source == .config else {
                    throw StoreError(.conflict, "subscriptions: id \(subscription.id) is already used by a subscription created through the API")
                }
                // A generated secret (empty in config) stays stable across restarts, and so does
                // the status (a 410 may have disabled it) unless the URL changed.
                if subscription.secret.isEmpty {
                    subscription.secret = existing.secret
                    subscription.previousSecret = existing.previousSecret
                    subscription.previousSecretExpiresAt = existing.previousSecretExpiresAt
                }
                subscription.createdAt = existing.createdAt
                subscription.status = existing.url == subscription.url ? existing.status : .enabled
                updates.append(subscription)
            } else {
                if subscription.secret.isEmpty { subscription.secret = generateSecret() }
                inserts.append(subscription)
            }
        }
        deletes = stored.filter { $0.source == .config && !configured.map(\.id).contains($0.id) }.map(\.id)
    }
}
