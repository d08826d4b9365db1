import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import Auth

/// Simple tokens: format, TTL since last use with an injected clock, and invalidation.
@Suite struct SimpleTokenTests {
    @Test func prefixIsSixteenLettersFromTheGenerator() {
        let provider = SimpleTokenProvider()
        var first = SeededRandom(seed: 3)
        var second = SeededRandom(seed: 3)
        let prefix = provider.generatePrefix(using: &first)
        #expect(prefix.count == 16)
        #expect(prefix.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) })
        #expect(provider.generatePrefix(using: &second) == prefix)
        #expect(provider.generatePrefix().count == 16)
        #expect(JWTTokenProviderFixtures.hmacProvider().generatePrefix().isEmpty, "JWTs need no prefix")
    }

    @Test func tokenIsPrefixDotIndex() throws {
        var provider = SimpleTokenProvider(clock: ManualClock().authClock)
        provider.enable()
        let token = try provider.assign(username: "alice", revision: 3, index: 1234, prefix: "AbCdEfGhIjKlMnOp")
        #expect(token == "AbCdEfGhIjKlMnOp.1234")
        #expect(SimpleTokenProvider.index(of: token) == 1234)
        #expect(provider.info(token: token, currentRevision: 9) == AuthInfo(username: "alice", revision: 9))
        #expect(
            authError { _ = try provider.assign(username: "bob", revision: 3, index: 1234, prefix: "AbCdEfGhIjKlMnOp") }
                == .internal("auth: simple token is already assigned"))
    }

    @Test(arguments: ["", "abc", "abc.", "abc.-1", "abc.+1", "a.b.1", "abc.1x", "abc.18446744073709551616"])
    func malformedTokensHaveNoIndex(token: String) {
        #expect(SimpleTokenProvider.index(of: token) == nil)
    }

    @Test func tokenExpiresTTLAfterItsLastUse() throws {
        let clock = ManualClock()
        var provider = SimpleTokenProvider(ttl: .seconds(300), clock: clock.authClock)
        provider.enable()
        let token = try provider.assign(username: "alice", revision: 1, index: 1, prefix: "aaaaaaaaaaaaaaaa")
        clock.advance(by: .seconds(299))
        #expect(provider.info(token: token, currentRevision: 1) != nil, "used at 299 s: the TTL restarts")
        clock.advance(by: .seconds(300))
        #expect(provider.info(token: token, currentRevision: 1) != nil, "exactly at its deadline it still works")
        clock.advance(by: .milliseconds(300_001))
        #expect(provider.info(token: token, currentRevision: 1) == nil, "past the deadline it is gone")
        #expect(provider.count == 0)
    }

    @Test func purgeForgetsExpiredTokensOnly() throws {
        let clock = ManualClock()
        var provider = SimpleTokenProvider(ttl: .seconds(10), clock: clock.authClock)
        provider.enable()
        _ = try provider.assign(username: "a", revision: 1, index: 1, prefix: "p")
        clock.advance(by: .seconds(6))
        _ = try provider.assign(username: "b", revision: 1, index: 2, prefix: "p")
        clock.advance(by: .seconds(6))
        provider.purgeExpired()
        #expect(provider.count == 1)
        #expect(provider.info(token: "p.2", currentRevision: 1)?.username == "b")
    }

    @Test func zeroTTLMeansTheDefault() {
        #expect(SimpleTokenProvider(ttl: .zero).ttl == .seconds(300))
        #expect(SimpleTokenProvider(ttl: .seconds(-5)).ttl == .seconds(300))
    }

    @Test func tokensAssignedWhileDisabledAreNotKept() throws {
        var provider = SimpleTokenProvider(clock: ManualClock().authClock)
        let token = try provider.assign(username: "alice", revision: 1, index: 5, prefix: "x")
        #expect(token == "x.5")
        provider.enable()
        #expect(provider.info(token: token, currentRevision: 1) == nil)
    }

    @Test func invalidateUserEndsOnlyThatUsersTokens() throws {
        var provider = SimpleTokenProvider(clock: ManualClock().authClock)
        provider.enable()
        _ = try provider.assign(username: "alice", revision: 1, index: 1, prefix: "a")
        _ = try provider.assign(username: "alice", revision: 1, index: 2, prefix: "a")
        _ = try provider.assign(username: "bob", revision: 1, index: 3, prefix: "a")
        provider.invalidateUser("alice")
        #expect(provider.count == 1)
        #expect(provider.info(token: "a.3", currentRevision: 1)?.username == "bob")
        provider.disable()
        provider.enable()
        #expect(provider.info(token: "a.3", currentRevision: 1) == nil, "disabling drops every token")
    }

    @Test func nopProviderIssuesNothing() {
        var provider = NopTokenProvider()
        #expect(
            authError { _ = try provider.assign(username: "root", revision: 1, index: 1, prefix: "") } == .authFailed)
        #expect(provider.info(token: "anything", currentRevision: 1) == nil)
    }
}
