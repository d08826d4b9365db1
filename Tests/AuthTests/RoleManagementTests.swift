import EtcdProto
import Foundation
import Testing

@testable import Auth

/// RoleAdd, RoleDelete, RoleGrantPermission, RoleRevokePermission, RoleGet and RoleList.
@Suite struct RoleManagementTests {
    @Test func roleAddAndItsErrors() throws {
        var store = AuthStore()
        _ = try store.roleAdd(roleAdd("reader"))
        #expect(store.revision == 2)
        #expect(store.role(named: "reader")?.keyPermission == [])
        #expect(authError { _ = try store.roleAdd(roleAdd("reader")) } == .roleAlreadyExist)
        #expect(authError { _ = try store.roleAdd(roleAdd("")) } == .roleEmpty)
        #expect(AuthError.roleEmpty.message == "etcdserver: role name is empty")
        #expect(store.revision == 2)
    }

    @Test func roleDeleteRevokesTheRoleFromEveryUser() throws {
        var store = AuthStore()
        for name in ["alice", "bob"] { _ = try store.userAdd(userAddRequest(name)) }
        for name in ["reader", "writer"] { _ = try store.roleAdd(roleAdd(name)) }
        _ = try store.userGrantRole(grantRole("alice", "reader"))
        _ = try store.userGrantRole(grantRole("alice", "writer"))
        _ = try store.userGrantRole(grantRole("bob", "reader"))
        let revision = store.revision
        var delete = Etcdserverpb_AuthRoleDeleteRequest()
        delete.role = "reader"
        _ = try store.roleDelete(delete)
        #expect(store.revision == revision + 1, "one bump for the whole deletion")
        #expect(store.role(named: "reader") == nil)
        #expect(store.user(named: "alice")?.roles == ["writer"])
        #expect(store.user(named: "bob")?.roles == [])
        #expect(authError { _ = try store.roleDelete(delete) } == .roleNotFound)
    }

    @Test func rootRoleCannotBeDeletedWhileAuthIsOn() throws {
        var tokens = NopTokenProvider()
        var store = try storeWithRoot(tokens: &tokens)
        _ = try store.roleAdd(roleAdd("root"))
        _ = try store.authEnable(tokens: &tokens)
        var delete = Etcdserverpb_AuthRoleDeleteRequest()
        delete.role = "root"
        #expect(authError { _ = try store.roleDelete(delete) } == .invalidAuthMgmt)
        _ = store.authDisable(tokens: &tokens)
        _ = try store.roleDelete(delete)
        #expect(store.user(named: "root")?.roles == [], "deleting role root revokes it from user root")
    }

    @Test func grantPermissionKeepsPermissionsSortedByKey() throws {
        var store = AuthStore()
        _ = try store.roleAdd(roleAdd("r"))
        _ = try store.roleGrantPermission(grantPermission("r", permission(.read, k("m"))))
        _ = try store.roleGrantPermission(grantPermission("r", permission(.write, k("a"), k("c"))))
        _ = try store.roleGrantPermission(grantPermission("r", permission(.readwrite, k("z"), fromKeyEnd)))
        var get = Etcdserverpb_AuthRoleGetRequest()
        get.role = "r"
        #expect(try store.roleGet(get).perm.map(\.key) == [k("a"), k("m"), k("z")])
        #expect(store.revision == 5)

        // Same key and range end: only the type changes (and the revision still moves, as in etcd).
        _ = try store.roleGrantPermission(grantPermission("r", permission(.readwrite, k("m"))))
        let perms = try store.roleGet(get).perm
        #expect(perms.count == 3)
        #expect(perms[1].permType == .readwrite)
        #expect(store.revision == 6)

        // Same key, other range end: a second entry after the first.
        _ = try store.roleGrantPermission(grantPermission("r", permission(.read, k("m"), k("n"))))
        #expect(try store.roleGet(get).perm.map(\.rangeEnd) == [k("c"), Data(), k("n"), fromKeyEnd])
    }

    @Test func grantPermissionRefusesWhatEtcdRefuses() throws {
        var store = AuthStore()
        _ = try store.roleAdd(roleAdd("r"))
        var missing = Etcdserverpb_AuthRoleGrantPermissionRequest()
        missing.name = "r"
        #expect(authError { _ = try store.roleGrantPermission(missing) } == .permissionNotGiven)
        let invalid: [(Data, Data)] = [(Data(), Data()), (Data(), k("b")), (k("b"), k("a")), (k("b"), k("b"))]
        for (key, end) in invalid {
            #expect(
                authError { _ = try store.roleGrantPermission(grantPermission("r", permission(.read, key, end))) }
                    == .invalidAuthMgmt)
        }
        #expect(
            authError { _ = try store.roleGrantPermission(grantPermission("ghost", permission(.read, k("a")))) }
                == .roleNotFound)
        #expect(store.revision == 2)
    }

    @Test func revokePermissionMatchesKeyAndRangeEndExactly() throws {
        var store = AuthStore()
        _ = try store.roleAdd(roleAdd("r"))
        _ = try store.roleGrantPermission(grantPermission("r", permission(.read, k("a"), k("c"))))
        _ = try store.roleGrantPermission(grantPermission("r", permission(.write, k("a"))))
        #expect(
            authError { _ = try store.roleRevokePermission(revokePermission("r", k("a"), k("b"))) }
                == .permissionNotGranted)
        let revision = store.revision
        _ = try store.roleRevokePermission(revokePermission("r", k("a"), k("c")))
        #expect(store.revision == revision + 1)
        #expect(store.role(named: "r")?.keyPermission == [permission(.write, k("a"))])
        #expect(authError { _ = try store.roleRevokePermission(revokePermission("ghost", k("a"))) } == .roleNotFound)
    }

    @Test func roleGetAndRoleList() throws {
        var store = AuthStore()
        for name in ["writer", "Admin", "reader"] { _ = try store.roleAdd(roleAdd(name)) }
        #expect(store.roleList().roles == ["Admin", "reader", "writer"])
        var get = Etcdserverpb_AuthRoleGetRequest()
        get.role = "ghost"
        #expect(authError { _ = try store.roleGet(get) } == .roleNotFound)
    }

    @Test func permissionsTakeEffectImmediately() throws {
        var tokens = NopTokenProvider()
        var store = try enabledStore(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("alice"))
        _ = try store.roleAdd(roleAdd("reader"))
        _ = try store.userGrantRole(grantRole("alice", "reader"))
        var alice: AuthInfo { AuthInfo(username: "alice", revision: store.revision) }
        #expect(authError { try store.isRangePermitted(alice, key: k("foo"), rangeEnd: Data()) } == .permissionDenied)
        _ = try store.roleGrantPermission(grantPermission("reader", permission(.read, k("foo"))))
        #expect(authError { try store.isRangePermitted(alice, key: k("foo"), rangeEnd: Data()) } == nil)
        _ = try store.roleRevokePermission(revokePermission("reader", k("foo")))
        #expect(authError { try store.isRangePermitted(alice, key: k("foo"), rangeEnd: Data()) } == .permissionDenied)
        _ = try store.roleGrantPermission(grantPermission("reader", permission(.read, k("foo"))))
        var delete = Etcdserverpb_AuthRoleDeleteRequest()
        delete.role = "reader"
        _ = try store.roleDelete(delete)
        #expect(authError { try store.isRangePermitted(alice, key: k("foo"), rangeEnd: Data()) } == .permissionDenied)
    }
}
