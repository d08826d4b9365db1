import Auth
import EtcdProto
import Foundation
import MVCC
import Storage
import Synchronization

/// A member's auth state: the replicated ``AuthStore`` (changed only by the apply loop, in log order) and the
/// member-local token provider, shared with the threads that serve requests.
///
/// The store lives in the database's `auth` table as etcd's bucket rows (`AuthTable`), written in the apply
/// batch that changed it, so Raft snapshots and etcd-format snapshots carry users and roles. While auth is off
/// the request path pays one relaxed atomic load (``isEnabled``) and nothing else.
public final class AuthState: Sendable {
    private struct State: Sendable {
        var store: AuthStore
        var tokens: any TokenProvider
    }

    private let state: Mutex<State>
    private let enabled = Atomic<Bool>(false)
    /// Hashes passwords on the proposing member (`--bcrypt-cost`).
    public let hasher: Bcrypt

    init(backend: Backend, tokens: any TokenProvider, bcryptCost: Int) throws {
        hasher = Bcrypt(cost: bcryptCost)
        var tokens = tokens
        let store = try Self.load(backend.writer)
        if store.isEnabled { tokens.enable() }
        state = Mutex(State(store: store, tokens: tokens))
        enabled.store(store.isEnabled, ordering: .releasing)
    }

    /// Whether auth is on: checked first by every request, so that a member without auth does no more.
    public var isEnabled: Bool { enabled.load(ordering: .acquiring) }

    /// A copy of the store as applied so far (a value: checks run on it without holding any lock).
    public var store: AuthStore { state.withLock { $0.store } }

    /// Who a request comes from (etcd's `AuthInfoFromCtx`): nil while auth is off; a token wins over a verified
    /// client certificate's common name. Simple tokens must be applied here first (``SimpleTokenProvider/index(of:)``).
    public func resolve(token: String?, commonName: String?) throws(AuthError) -> AuthInfo? {
        try state.withLock { (state) throws(AuthError) -> AuthInfo? in
            try state.store.resolveIdentity(
                token: token, clientCertificateCommonName: commonName, tokens: &state.tokens)
        }
    }

    /// The random part of a simple token, for an Authenticate about to be proposed (empty for JWT).
    public func generatePrefix() -> String {
        state.withLock { $0.tokens.generatePrefix() }
    }

    // MARK: Apply loop

    /// Applies one auth entry at Raft index `index`; persists the store in the open batch if it changed.
    func apply(_ request: AuthRequest, requester: AuthInfo?, index: UInt64, backend: Backend) throws
        -> Result<AuthResponse, AuthError>
    {
        let outcome = state.withLock { state -> (Result<AuthResponse, AuthError>, AuthStore?) in
            let before = (state.store.isEnabled, state.store.revision)
            do throws(AuthError) {
                let response = try state.store.apply(request, requester: requester, index: index, tokens: &state.tokens)
                let changed = before != (state.store.isEnabled, state.store.revision)
                return (.success(response), changed ? state.store : nil)
            } catch {
                return (.failure(error), nil)
            }
        }
        if let changed = outcome.1 {
            try Self.write(changed, backend: backend)
            enabled.store(changed.isEnabled, ordering: .releasing)
        }
        return outcome.0
    }

    /// Reloads the store after the database was replaced by a leader's snapshot (etcd's `authStore.Recover`):
    /// tokens end if auth is now off and the provider starts again if it is on.
    func reload(backend: Backend) throws {
        let store = try Self.load(backend.writer)
        state.withLock { state in
            if state.store.isEnabled && !store.isEnabled { state.tokens.disable() }
            if store.isEnabled { state.tokens.enable() }
            state.store = store
        }
        enabled.store(store.isEnabled, ordering: .releasing)
    }

    private static func load(_ connection: SQLiteConnection) throws -> AuthStore {
        var entries: [AuthBackendEntry] = []
        let query = try connection.statement("SELECT bucket, key, value FROM auth ORDER BY bucket, key")
        defer { query.reset() }
        while try query.step() {
            entries.append(AuthBackendEntry(bucket: query.string(0), key: query.data(1), value: query.data(2)))
        }
        return try AuthStore(backendEntries: entries)
    }

    /// Replaces the table with the store's rows, inside the apply loop's open transaction.
    private static func write(_ store: AuthStore, backend: Backend) throws {
        let entries = try store.backendEntries()
        try backend.writer.execute("DELETE FROM auth")
        let insert = try backend.writer.statement("INSERT INTO auth(bucket, key, value) VALUES(?1, ?2, ?3)")
        for entry in entries {
            insert.bind(1, entry.bucket).bind(2, entry.key).bind(3, entry.value)
            try insert.run()
        }
    }
}

extension EtcdError {
    /// An auth error as clients see it: the same gRPC code and message.
    public init(_ error: AuthError) {
        self.init(StatusCode(rawValue: error.code.rawValue) ?? .unknown, error.message)
    }
}

extension Quorumpb_RaftRequest {
    /// The identity carried in the proposal (nil: none), as etcd's applier rebuilds `AuthInfo` from the header.
    var requester: AuthInfo? {
        authUsername.isEmpty ? nil : AuthInfo(username: authUsername, revision: authRevision)
    }

    /// The auth operation this entry carries, if any.
    var authRequest: AuthRequest? {
        switch request {
        case .authEnable: return .authEnable
        case .authDisable: return .authDisable
        case .authStatus: return .authStatus
        case .authAuthenticate(let r): return .authenticate(name: r.name, simpleTokenPrefix: r.simpleTokenPrefix)
        case .authUserAdd(let r): return .userAdd(r)
        case .authUserDelete(let r): return .userDelete(r)
        case .authUserChangePassword(let r): return .userChangePassword(r)
        case .authUserGrantRole(let r): return .userGrantRole(r)
        case .authUserRevokeRole(let r): return .userRevokeRole(r)
        case .authUserGet(let r): return .userGet(r)
        case .authUserList: return .userList
        case .authRoleAdd(let r): return .roleAdd(r)
        case .authRoleDelete(let r): return .roleDelete(r)
        case .authRoleGrantPermission(let r): return .roleGrantPermission(r)
        case .authRoleRevokePermission(let r): return .roleRevokePermission(r)
        case .authRoleGet(let r): return .roleGet(r)
        case .authRoleList: return .roleList
        default: return nil
        }
    }
}
