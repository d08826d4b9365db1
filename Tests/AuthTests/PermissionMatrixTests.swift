import EtcdProto
import Foundation
import Testing

@testable import Auth

/// The permission matrix: users holding read, write or readwrite on a single key, a range, a prefix and a from-key
/// range, against every kind of request, with the users each request must let through. Everyone else is refused
/// with `permission denied`; `root` passes everything; `nobody` (a user without roles) passes only what needs no
/// key permission.
@Suite struct PermissionMatrixTests {
    /// The scopes: `k` (key "k"), `range` ["a", "c"), `prefix` "p/" (["p/", "p0")), `from` ["x", end).
    static let scopes: [(name: String, key: Data, rangeEnd: Data)] = [
        ("k", k("k"), Data()), ("range", k("a"), k("c")), ("prefix", k("p/"), prefixEnd(k("p/"))),
        ("from", k("x"), fromKeyEnd),
    ]
    static let types: [(name: String, type: Authpb_Permission.TypeEnum)] = [
        ("r", .read), ("w", .write), ("rw", .readwrite),
    ]
    /// "k:r", "range:rw", ... plus "root" and "nobody".
    static let userNames = scopes.flatMap { scope in types.map { "\(scope.name):\($0.name)" } } + ["root", "nobody"]

    /// A store with one user and one role per scope and type, plus root and nobody, auth on.
    static func makeStore() throws -> AuthStore {
        var tokens = NopTokenProvider()
        var store = try enabledStore(tokens: &tokens)
        for scope in scopes {
            for type in types {
                let name = "\(scope.name):\(type.name)"
                _ = try store.userAdd(userAddRequest(name))
                _ = try store.roleAdd(roleAdd(name))
                _ = try store.roleGrantPermission(
                    grantPermission(name, permission(type.type, scope.key, scope.rangeEnd)))
                _ = try store.userGrantRole(grantRole(name, name))
            }
        }
        _ = try store.userAdd(userAddRequest("nobody"))
        return store
    }

    typealias Check = @Sendable (AuthStore, AuthInfo?) throws -> Void

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var check: Check
        /// Users that pass, besides root. `everyone` for checks that need no key permission.
        var allowed: Set<String>
        var testDescription: String { name }
    }

    static let everyone = Set(userNames)

    static func range(_ key: Data, _ end: Data = Data()) -> Check {
        var request = Etcdserverpb_RangeRequest()
        request.key = key
        request.rangeEnd = end
        return { [request] store, info in try store.checkRange(request, info) }
    }

    static func put(_ key: Data, prevKv: Bool = false, lease: [Data]? = nil) -> Check {
        var request = Etcdserverpb_PutRequest()
        request.key = key
        request.prevKv = prevKv
        request.lease = lease == nil ? 0 : 7
        return { [request] store, info in try store.checkPut(request, info, leaseKeys: { $0 == 7 ? lease : nil }) }
    }

    static func delete(_ key: Data, _ end: Data = Data(), prevKv: Bool = false) -> Check {
        var request = Etcdserverpb_DeleteRangeRequest()
        request.key = key
        request.rangeEnd = end
        request.prevKv = prevKv
        return { [request] store, info in try store.checkDeleteRange(request, info) }
    }

    static func op(range key: Data) -> Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        op.requestRange.key = key
        return op
    }

    static func op(put key: Data) -> Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        op.requestPut.key = key
        return op
    }

    static func op(txn: Etcdserverpb_TxnRequest) -> Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        op.requestTxn = txn
        return op
    }

    static func txn(
        compare: [Data] = [], success: [Etcdserverpb_RequestOp] = [], failure: [Etcdserverpb_RequestOp] = []
    ) -> Etcdserverpb_TxnRequest {
        var request = Etcdserverpb_TxnRequest()
        request.compare = compare.map { key in
            var compare = Etcdserverpb_Compare()
            compare.key = key
            return compare
        }
        request.success = success
        request.failure = failure
        return request
    }

    static func check(_ request: Etcdserverpb_TxnRequest) -> Check {
        { store, info in try store.checkTxn(request, info, leaseKeys: { _ in nil }) }
    }

    static func watch(_ key: Data, _ end: Data = Data()) -> Check {
        var request = Etcdserverpb_WatchCreateRequest()
        request.key = key
        request.rangeEnd = end
        return { [request] store, info in try store.checkWatch(request, info) }
    }

    static let rows: [Row] = [
        Row(name: "Range k", check: range(k("k")), allowed: ["k:r", "k:rw"]),
        Row(name: "Range [k, k\\0)", check: range(k("k"), k("k\0")), allowed: ["k:r", "k:rw"]),
        Row(name: "Range [a, c)", check: range(k("a"), k("c")), allowed: ["range:r", "range:rw"]),
        Row(name: "Range [a, b)", check: range(k("a"), k("b")), allowed: ["range:r", "range:rw"]),
        Row(name: "Range b", check: range(k("b")), allowed: ["range:r", "range:rw"]),
        Row(name: "Range [b, d)", check: range(k("b"), k("d")), allowed: []),
        Row(name: "Range c", check: range(k("c")), allowed: []),
        Row(name: "Range prefix p/", check: range(k("p/"), prefixEnd(k("p/"))), allowed: ["prefix:r", "prefix:rw"]),
        Row(name: "Range p/sub", check: range(k("p/sub")), allowed: ["prefix:r", "prefix:rw"]),
        Row(name: "Range prefix p", check: range(k("p"), prefixEnd(k("p"))), allowed: []),
        Row(name: "Range from x", check: range(k("x"), fromKeyEnd), allowed: ["from:r", "from:rw"]),
        Row(name: "Range from y", check: range(k("y"), fromKeyEnd), allowed: ["from:r", "from:rw"]),
        Row(name: "Range from w", check: range(k("w"), fromKeyEnd), allowed: []),
        Row(name: "Range [x, zzz)", check: range(k("x"), k("zzz")), allowed: ["from:r", "from:rw"]),
        Row(name: "Range everything", check: range(fromKeyEnd, fromKeyEnd), allowed: []),
        Row(name: "Put k", check: put(k("k")), allowed: ["k:w", "k:rw"]),
        Row(name: "Put k prev_kv", check: put(k("k"), prevKv: true), allowed: ["k:rw"]),
        Row(name: "Put b", check: put(k("b")), allowed: ["range:w", "range:rw"]),
        Row(name: "Put c", check: put(k("c")), allowed: []),
        Row(name: "Put p/x", check: put(k("p/x")), allowed: ["prefix:w", "prefix:rw"]),
        Row(name: "Put y", check: put(k("y")), allowed: ["from:w", "from:rw"]),
        Row(name: "Put k with lease on k", check: put(k("k"), lease: [k("k")]), allowed: ["k:w", "k:rw"]),
        Row(name: "Put k with lease on b", check: put(k("k"), lease: [k("b")]), allowed: []),
        Row(name: "DeleteRange k", check: delete(k("k")), allowed: ["k:w", "k:rw"]),
        Row(name: "DeleteRange [a, c)", check: delete(k("a"), k("c")), allowed: ["range:w", "range:rw"]),
        Row(name: "DeleteRange [a, c) prev_kv", check: delete(k("a"), k("c"), prevKv: true), allowed: ["range:rw"]),
        Row(
            name: "DeleteRange prefix p/", check: delete(k("p/"), prefixEnd(k("p/"))),
            allowed: ["prefix:w", "prefix:rw"]),
        Row(name: "DeleteRange from x", check: delete(k("x"), fromKeyEnd), allowed: ["from:w", "from:rw"]),
        Row(
            name: "Txn read-only b", check: check(txn(success: [op(range: k("b"))])), allowed: ["range:r", "range:rw"]),
        Row(
            name: "Txn compare k, put k", check: check(txn(compare: [k("k")], success: [op(put: k("k"))])),
            allowed: ["k:rw"]),
        Row(
            name: "Txn range k, else put k",
            check: check(txn(success: [op(range: k("k"))], failure: [op(put: k("k"))])),
            allowed: ["k:rw"]),
        Row(
            name: "Txn nested put b", check: check(txn(success: [op(txn: txn(success: [op(put: k("b"))]))])),
            allowed: ["range:w", "range:rw"]),
        Row(
            name: "Txn nested compare b", check: check(txn(failure: [op(txn: txn(compare: [k("b")]))])),
            allowed: ["range:r", "range:rw"]),
        Row(
            name: "Txn twice nested put p/x and put y",
            check: check(
                txn(success: [op(txn: txn(success: [op(txn: txn(success: [op(put: k("p/x")), op(put: k("y"))]))]))])),
            allowed: []),
        Row(name: "Watch k", check: watch(k("k")), allowed: ["k:r", "k:rw"]),
        Row(name: "Watch prefix p/", check: watch(k("p/"), prefixEnd(k("p/"))), allowed: ["prefix:r", "prefix:rw"]),
        Row(name: "Watch from x", check: watch(k("x"), fromKeyEnd), allowed: ["from:r", "from:rw"]),
        Row(name: "Watch [a, d)", check: watch(k("a"), k("d")), allowed: []),
        Row(
            name: "LeaseRevoke keys k", check: { try $0.checkLeaseRevoke($1, leaseKeys: [k("k")]) },
            allowed: ["k:w", "k:rw"]),
        Row(
            name: "LeaseRevoke keys k, b", check: { try $0.checkLeaseRevoke($1, leaseKeys: [k("k"), k("b")]) },
            allowed: []),
        Row(name: "LeaseRevoke no keys", check: { try $0.checkLeaseRevoke($1, leaseKeys: []) }, allowed: everyone),
        Row(
            name: "LeaseRevoke unknown lease", check: { try $0.checkLeaseRevoke($1, leaseKeys: nil) }, allowed: everyone
        ),
        Row(
            name: "LeaseTimeToLive keys b", check: { try $0.checkLeaseTimeToLive($1, leaseKeys: [k("b")]) },
            allowed: ["range:r", "range:rw"]),
        Row(
            name: "LeaseKeepAlive keys p/1", check: { try $0.checkLeaseRenew($1, leaseKeys: [k("p/1")]) },
            allowed: ["prefix:w", "prefix:rw"]),
        Row(
            name: "LeaseLeases", check: { try $0.checkLeaseLeases($1, allLeaseKeys: [[k("x")], [k("y")]]) },
            allowed: ["from:r", "from:rw"]),
        Row(name: "Compact", check: { try $0.checkCall(.compact, $1) }, allowed: []),
        Row(name: "Snapshot", check: { try $0.checkCall(.snapshot, $1) }, allowed: []),
        Row(name: "MemberAdd", check: { try $0.checkCall(.memberAdd, $1) }, allowed: []),
        Row(name: "MemberList", check: { try $0.checkCall(.memberList, $1) }, allowed: everyone),
        Row(name: "Status", check: { try $0.checkCall(.status, $1) }, allowed: everyone),
    ]

    static let store = Result { try makeStore() }

    @Test(arguments: rows)
    func matrix(_ row: Row) throws {
        let store = try Self.store.get()
        for user in Self.userNames {
            let info = AuthInfo(username: user, revision: store.revision)
            let expected: AuthError? = user == "root" || row.allowed.contains(user) ? nil : .permissionDenied
            #expect(authError { try row.check(store, info) } == expected, "\(row.name) as \(user)")
        }
    }

    @Test(arguments: rows)
    func withoutIdentity(_ row: Row) throws {
        let store = try Self.store.get()
        let error = authError { try row.check(store, nil) }
        if row.name.hasPrefix("LeaseRevoke no keys") || row.name.hasPrefix("LeaseRevoke unknown") {
            #expect(error == nil, "no attached key, nothing to check")
        } else {
            #expect(error == .userEmpty, "\(row.name) without identity")
        }
    }

    @Test(arguments: rows)
    func authOffLetsEverythingThrough(_ row: Row) throws {
        var store = try Self.store.get()
        var tokens = NopTokenProvider()
        _ = store.authDisable(tokens: &tokens)
        #expect(authError { try row.check(store, nil) } == nil)
        #expect(authError { try row.check(store, AuthInfo(username: "nobody", revision: 1)) } == nil)
    }

    @Test func everyServerCallHasEtcdsRequirement() throws {
        let store = try Self.store.get()
        let alice = AuthInfo(username: "k:rw", revision: store.revision)
        for call in ServerCall.allCases {
            switch call.requirement {
            case .admin:
                #expect(authError { try store.checkCall(call, alice) } == .permissionDenied, "\(call)")
                #expect(authError { try store.checkCall(call, nil) } == .userEmpty, "\(call)")
            case .identity:
                #expect(authError { try store.checkCall(call, alice) } == nil, "\(call)")
                #expect(authError { try store.checkCall(call, nil) } == .userEmpty, "\(call)")
            case .none:
                #expect(authError { try store.checkCall(call, nil) } == nil, "\(call)")
            }
            #expect(authError { try store.checkCall(call, AuthInfo(username: "root", revision: 1)) } == nil)
        }
        #expect(ServerCall.compact.requirement == .admin, "etcd 3.5 routes Compact through AuthAdmin")
        #expect(ServerCall.alarmGet.requirement == .identity && ServerCall.alarmChange.requirement == .admin)
    }

    @Test func refusedWatchesCarryEtcdsCancelReason() {
        #expect(AuthStore.watchCancelReason(for: .permissionDenied) == "etcdserver: permission denied")
        #expect(AuthStore.watchCancelReason(for: .userEmpty) == "etcdserver: user name is empty")
        #expect(AuthStore.watchCancelReason(for: .authOldRevision) == "etcdserver: revision of auth store is old")
        #expect(AuthStore.watchCancelReason(for: .invalidAuthToken) == "etcdserver: invalid auth token")
        #expect(AuthStore.watchCancelReason(for: .userNotFound) == "etcdserver: permission denied")
    }
}
