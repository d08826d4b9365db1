import EtcdProto
import Foundation
import Testing

@testable import Auth

/// AuthEnable, AuthDisable, AuthStatus, Authenticate, and the admin gate of the apply loop.
@Suite struct EnableAndApplyTests {
    @Test func enableNeedsRootUserWithRootRole() throws {
        var tokens = NopTokenProvider()
        var store = AuthStore()
        #expect(authError { _ = try store.authEnable(tokens: &tokens) } == .rootUserNotExist)
        _ = try store.userAdd(userAddRequest("root"))
        #expect(authError { _ = try store.authEnable(tokens: &tokens) } == .rootRoleNotExist)
        #expect(AuthError.rootRoleNotExist.message == "etcdserver: root user does not have root role")
        _ = try store.userGrantRole(grantRole("root", "root"))
        let revision = store.revision
        _ = try store.authEnable(tokens: &tokens)
        #expect(store.isEnabled)
        #expect(store.revision == revision, "enabling does not bump the auth revision")
        _ = try store.authEnable(tokens: &tokens)
        #expect(store.revision == revision, "enabling twice is a no-op")
    }

    @Test func disableBumpsTheRevisionKeepsEverythingAndEndsTokens() throws {
        var tokens = SimpleTokenProvider(clock: ManualClock().authClock)
        var store = try enabledStore(tokens: &tokens)
        _ = try store.roleAdd(roleAdd("reader"))
        let token = try store.authenticate(
            name: "root", simpleTokenPrefix: "qwertyuiopasdfgh", index: 3, tokens: &tokens)
        let revision = store.revision
        _ = store.authDisable(tokens: &tokens)
        #expect(!store.isEnabled)
        #expect(store.revision == revision + 1)
        #expect(store.userList().users == ["root"])
        #expect(store.roleList().roles == ["reader"])
        #expect(tokens.info(token: token.token, currentRevision: store.revision) == nil)
        _ = store.authDisable(tokens: &tokens)
        #expect(store.revision == revision + 1, "disabling twice is a no-op")
        let status = store.authStatus()
        #expect(!status.enabled && status.authRevision == revision + 1)
    }

    @Test func authenticateAndCheckPassword() throws {
        var tokens = SimpleTokenProvider(clock: ManualClock().authClock)
        var store = try storeWithRoot(tokens: &tokens)
        #expect(authError { _ = try store.checkPassword(name: "root", password: "rootpw") } == .authNotEnabled)
        #expect(
            authError { _ = try store.authenticate(name: "root", simpleTokenPrefix: "x", index: 1, tokens: &tokens) }
                == .authNotEnabled)
        _ = try store.authEnable(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("svc", noPassword: true))
        #expect(try store.checkPassword(name: "root", password: "rootpw") == store.revision)
        #expect(authError { _ = try store.checkPassword(name: "root", password: "nope") } == .authFailed)
        #expect(authError { _ = try store.checkPassword(name: "ghost", password: "x") } == .authFailed)
        #expect(authError { _ = try store.checkPassword(name: "svc", password: "x") } == .noPasswordUser)
        #expect(
            authError { _ = try store.authenticate(name: "svc", simpleTokenPrefix: "x", index: 1, tokens: &tokens) }
                == .authFailed)
        let response = try store.authenticate(
            name: "root", simpleTokenPrefix: "abcdefghijklmnop", index: 12, tokens: &tokens)
        #expect(response.token == "abcdefghijklmnop.12")
    }

    @Test func managementNeedsRootWhileAuthIsOn() throws {
        var tokens = SimpleTokenProvider(clock: ManualClock().authClock)
        var store = AuthStore()
        // Auth off: anyone, even nobody, may manage.
        _ = try store.apply(.userAdd(userAddRequest("root")), requester: nil, index: 1, tokens: &tokens)
        _ = try store.apply(.userGrantRole(grantRole("root", "root")), requester: nil, index: 2, tokens: &tokens)
        _ = try store.apply(.userAdd(userAddRequest("alice")), requester: nil, index: 3, tokens: &tokens)
        _ = try store.apply(.authEnable, requester: nil, index: 4, tokens: &tokens)

        let root = AuthInfo(username: "root", revision: store.revision)
        let alice = AuthInfo(username: "alice", revision: store.revision)
        let ghost = AuthInfo(username: "ghost", revision: store.revision)
        let admin: [AuthRequest] = [
            .authStatus, .userList, .roleList, .roleAdd(roleAdd("x")), .userAdd(userAddRequest("y")),
            .authDisable,
        ]
        for request in admin {
            #expect(request.needsAdminPermission)
            #expect(
                authError { _ = try store.apply(request, requester: alice, index: 5, tokens: &tokens) }
                    == .permissionDenied)
            #expect(
                authError { _ = try store.apply(request, requester: ghost, index: 5, tokens: &tokens) } == .userNotFound
            )
            #expect(authError { _ = try store.apply(request, requester: nil, index: 5, tokens: &tokens) } == .userEmpty)
        }
        guard case .authStatus(let status) = try store.apply(.authStatus, requester: root, index: 6, tokens: &tokens)
        else {
            Issue.record("wrong response")
            return
        }
        #expect(status.enabled)
    }

    @Test func usersMayReadThemselvesAndTheirRoles() throws {
        var tokens = NopTokenProvider()
        var store = try enabledStore(tokens: &tokens)
        _ = try store.userAdd(userAddRequest("alice"))
        _ = try store.userAdd(userAddRequest("bob"))
        _ = try store.roleAdd(roleAdd("reader"))
        _ = try store.roleAdd(roleAdd("secret"))
        _ = try store.userGrantRole(grantRole("alice", "reader"))
        let alice = AuthInfo(username: "alice", revision: store.revision)

        var getAlice = Etcdserverpb_AuthUserGetRequest()
        getAlice.name = "alice"
        var getBob = Etcdserverpb_AuthUserGetRequest()
        getBob.name = "bob"
        var getReader = Etcdserverpb_AuthRoleGetRequest()
        getReader.role = "reader"
        var getSecret = Etcdserverpb_AuthRoleGetRequest()
        getSecret.role = "secret"

        #expect(
            authError { _ = try store.apply(.userGet(getAlice), requester: alice, index: 1, tokens: &tokens) } == nil)
        #expect(
            authError { _ = try store.apply(.userGet(getBob), requester: alice, index: 1, tokens: &tokens) }
                == .permissionDenied)
        #expect(
            authError { _ = try store.apply(.roleGet(getReader), requester: alice, index: 1, tokens: &tokens) } == nil)
        #expect(
            authError { _ = try store.apply(.roleGet(getSecret), requester: alice, index: 1, tokens: &tokens) }
                == .permissionDenied)
        #expect(
            authError { _ = try store.apply(.userGet(getAlice), requester: nil, index: 1, tokens: &tokens) }
                == .userEmpty)
    }

    @Test func authenticateThroughApplyIsOpenToAll() throws {
        var tokens = SimpleTokenProvider(clock: ManualClock().authClock)
        var store = try enabledStore(tokens: &tokens)
        let response = try store.apply(
            .authenticate(name: "root", simpleTokenPrefix: "ZZZZZZZZZZZZZZZZ"), requester: nil, index: 44,
            tokens: &tokens)
        guard case .authenticate(let authenticated) = response else {
            Issue.record("wrong response")
            return
        }
        #expect(authenticated.token == "ZZZZZZZZZZZZZZZZ.44")
        #expect(tokens.info(token: "ZZZZZZZZZZZZZZZZ.44", currentRevision: store.revision)?.username == "root")
    }
}
