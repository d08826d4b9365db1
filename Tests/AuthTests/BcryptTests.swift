import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import Auth

/// Password hashing through libxcrypt, and the hashing step of the proposing member.
@Suite struct BcryptTests {
    @Test func hashVerifiesAndHonoursTheCost() throws {
        var generator = SeededRandom(seed: 7)
        let hash = try Bcrypt(cost: 5).hash(password: "s3cret", using: &generator)
        #expect(hash.hasPrefix("$2b$05$"))
        #expect(hash.utf8.count == 60)
        #expect(Bcrypt.verify(password: "s3cret", hash: Array(hash.utf8)))
        #expect(!Bcrypt.verify(password: "s3cret ", hash: Array(hash.utf8)))
        #expect(!Bcrypt.verify(password: "", hash: Array(hash.utf8)))
    }

    @Test func saltsComeFromTheInjectedGenerator() throws {
        var first = SeededRandom(seed: 99)
        var second = SeededRandom(seed: 99)
        var third = SeededRandom(seed: 100)
        let a = try testHasher.hash(password: "pw", using: &first)
        let b = try testHasher.hash(password: "pw", using: &second)
        let c = try testHasher.hash(password: "pw", using: &third)
        #expect(a == b, "same seed, same salt, same hash")
        #expect(a != c)
        let system = try testHasher.hash(password: "pw")
        #expect(system != a && Bcrypt.verify(password: "pw", hash: Array(system.utf8)))
    }

    @Test func costOutsideEtcdsRangeFallsBackToTen() {
        #expect(Bcrypt(cost: 3).cost == 10)
        #expect(Bcrypt(cost: 32).cost == 10)
        #expect(Bcrypt(cost: 4).cost == 4)
        #expect(Bcrypt(cost: 31).cost == 31)
        #expect(Bcrypt().cost == 10)
    }

    /// Hashes made elsewhere: Go's x/crypto/bcrypt test vector (the library etcd uses, `$2a$`), the Openwall
    /// crypt_blowfish vector, and one produced by python3's `crypt` module (libxcrypt, `$2b$`).
    @Test(arguments: [
        ("allmine", "$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga"),
        ("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
        ("correct horse battery staple", "$2b$05$abcdefghijklmnopqrstuuFiPhXf1sVd3pCCRO.uVh34H/qI/ZsuS"),
        ("", "$2b$04$ABCDEFGHIJKLMNOPQRSTUu8j1U7juAKgrFqRuEfOyY5KZo6M4DNqm"),
    ])
    func knownVectorsVerify(password: String, hash: String) {
        #expect(Bcrypt.verify(password: password, hash: Array(hash.utf8)))
        #expect(!Bcrypt.verify(password: password + "x", hash: Array(hash.utf8)))
    }

    @Test func malformedStoredHashesNeverMatch() {
        for stored in [
            "", "$", "$2a$10$fooo", "plaintext", "$2a$32$sssssssssssssssssssssshhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "*0",
        ] {
            #expect(!Bcrypt.verify(password: "", hash: Array(stored.utf8)), "\(stored)")
            #expect(!Bcrypt.verify(password: stored, hash: Array(stored.utf8)), "\(stored)")
        }
    }

    @Test func passwordsLongerThan72BytesAreRefusedAsGoRefusesThem() throws {
        let longest = String(repeating: "a", count: 72)
        var generator = SeededRandom(seed: 1)
        let hash = try testHasher.hash(password: longest, using: &generator)
        #expect(Bcrypt.verify(password: longest, hash: Array(hash.utf8)))
        #expect(authError { _ = try testHasher.hash(password: longest + "a", using: &generator) } == .passwordTooLong)
    }

    @Test func proposalHashesUserAddAsEtcdDoes() throws {
        var generator = SeededRandom(seed: 5)
        var request = Etcdserverpb_AuthUserAddRequest()
        request.name = "alice"
        request.password = "pw"
        request.hashedPassword = "client-supplied"
        try AuthProposal.prepare(&request, hasher: testHasher, using: &generator)
        #expect(request.password.isEmpty)
        let hash = try #require(Data(base64Encoded: request.hashedPassword))
        #expect(Bcrypt.verify(password: "pw", hash: hash), "the client's hashed_password is replaced")

        var empty = Etcdserverpb_AuthUserAddRequest()
        empty.name = "bob"
        try AuthProposal.prepare(&empty, hasher: testHasher, using: &generator)
        let emptyHash = try #require(Data(base64Encoded: empty.hashedPassword))
        #expect(Bcrypt.verify(password: "", hash: emptyHash), "an empty password is hashed too")
    }

    @Test func proposalLeavesAReadyMadeHashOfChangePassword() throws {
        var generator = SeededRandom(seed: 5)
        let readyMade = try testHasher.hash(password: "preset", using: &generator)
        var request = Etcdserverpb_AuthUserChangePasswordRequest()
        request.name = "alice"
        request.hashedPassword = Data(readyMade.utf8).base64EncodedString()
        try AuthProposal.prepare(&request, hasher: testHasher, using: &generator)
        #expect(request.hashedPassword == Data(readyMade.utf8).base64EncodedString())

        var store = AuthStore()
        var tokens = NopTokenProvider()
        _ = try store.userAdd(userAddRequest("alice"))
        _ = try store.userChangePassword(request, tokens: &tokens)
        #expect(Bcrypt.verify(password: "preset", hash: store.user(named: "alice")!.password))
    }
}
