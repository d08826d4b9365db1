import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import Auth

/// Keys made by openssl once per test run, and python3's `cryptography` as the independent JWT implementation.
enum JWTTokenProviderFixtures {
    struct Keys: Sendable {
        var directory: String
        func path(_ name: String) -> String { directory + "/" + name }
        func bytes(_ name: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path(name)) ?? Data()) }
    }

    static let keys: Result<Keys, any Error> = Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("authtests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let dir = directory.path
        let commands: [[String]] = [
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "\(dir)/rsa.pem"],
            ["openssl", "pkey", "-in", "\(dir)/rsa.pem", "-pubout", "-out", "\(dir)/rsa.pub"],
            ["openssl", "rsa", "-in", "\(dir)/rsa.pem", "-traditional", "-out", "\(dir)/rsa-pkcs1.pem"],
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "\(dir)/rsa2.pem"],
            ["openssl", "pkey", "-in", "\(dir)/rsa2.pem", "-pubout", "-out", "\(dir)/rsa2.pub"],
            ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(dir)/p256.pem"],
            ["openssl", "ec", "-in", "\(dir)/p256.pem", "-pubout", "-out", "\(dir)/p256.pub"],
            ["openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "\(dir)/p384.pem"],
            ["openssl", "ec", "-in", "\(dir)/p384.pem", "-pubout", "-out", "\(dir)/p384.pub"],
            ["openssl", "ecparam", "-name", "secp521r1", "-genkey", "-noout", "-out", "\(dir)/p521.pem"],
            ["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", "\(dir)/p521.pem", "-out", "\(dir)/p521-pkcs8.pem"],
            [
                "openssl", "req", "-x509", "-new", "-key", "\(dir)/rsa.pem", "-subj", "/CN=jwt", "-days", "1", "-out",
                "\(dir)/rsa.crt",
            ],
            [
                "openssl", "req", "-x509", "-new", "-key", "\(dir)/p256.pem", "-subj", "/CN=jwt", "-days", "1", "-out",
                "\(dir)/p256.crt",
            ],
        ]
        for command in commands {
            let result = try run(command)
            guard result.status == 0 else { throw AuthConfigurationError("failed: \(command.joined(separator: " "))") }
        }
        try pythonScript.write(toFile: "\(dir)/jwt.py", atomically: true, encoding: .utf8)
        return Keys(directory: dir)
    }

    /// Verifies a token (printing its header and claims as sorted JSON) or signs one, with `cryptography`.
    static let pythonScript = #"""
        import base64, json, sys
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

        def b64d(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        def b64e(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        def digest(alg): return {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]

        if sys.argv[1] == "verify":
            pub = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
            h, c, s = sys.argv[3].split(".")
            header, sig, data = json.loads(b64d(h)), b64d(s), (h + "." + c).encode()
            alg = header["alg"]
            if alg.startswith("RS"):
                pub.verify(sig, data, padding.PKCS1v15(), digest(alg))
            elif alg.startswith("PS"):
                pub.verify(sig, data, padding.PSS(mgf=padding.MGF1(digest(alg)), salt_length=padding.PSS.AUTO), digest(alg))
            else:
                n = len(sig) // 2
                der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
                pub.verify(der, data, ec.ECDSA(digest(alg)))
            print(json.dumps({"header": header, "claims": json.loads(b64d(c))}, sort_keys=True))
        else:
            key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), password=None)
            alg, header, claims = sys.argv[3], sys.argv[4], sys.argv[5]
            data = (b64e(header.encode()) + "." + b64e(claims.encode())).encode()
            if alg.startswith("RS"):
                sig = key.sign(data, padding.PKCS1v15(), digest(alg))
            elif alg.startswith("PS"):
                sig = key.sign(data, padding.PSS(mgf=padding.MGF1(digest(alg)), salt_length=padding.PSS.DIGEST_LENGTH), digest(alg))
            else:
                r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(digest(alg))))
                n = (key.curve.key_size + 7) // 8
                sig = r.to_bytes(n, "big") + s.to_bytes(n, "big")
            print(data.decode() + "." + b64e(sig))
        """#

    static func hmacProvider(clock: AuthClock = .system) -> JWTTokenProvider {
        try! JWTTokenProvider(method: .hs256, privateKey: Array("shared secret".utf8), publicKey: [], clock: clock)
    }

    static func python(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let keys = try keys.get()
        return try run(["python3", "-W", "ignore", keys.path("jwt.py")] + arguments)
    }
}

@Suite struct JWTTests {
    typealias F = JWTTokenProviderFixtures

    func provider(_ method: JWTSignMethod, priv: String?, pub: String?, clock: ManualClock) throws -> JWTTokenProvider {
        let keys = try F.keys.get()
        return try JWTTokenProvider(
            method: method, privateKey: priv.map(keys.bytes) ?? [], publicKey: pub.map(keys.bytes) ?? [],
            clock: clock.authClock)
    }

    @Test func rs256TokensAreByteIdenticalToAnIndependentSigner() throws {
        let clock = ManualClock()
        var signer = try provider(.rs256, priv: "rsa.pem", pub: "rsa.pub", clock: clock)
        let token = try signer.assign(username: "alice", revision: 5, index: 0, prefix: "")
        let exp = clock.unixSeconds + 300

        let verified = try F.python(["verify", F.keys.get().path("rsa.pub"), token])
        #expect(verified.status == 0, "python's cryptography accepts our RS256 signature")
        #expect(
            verified.output.trimmingCharacters(in: .whitespacesAndNewlines)
                == #"{"claims": {"exp": \#(exp), "revision": 5, "username": "alice"}, "header": {"alg": "RS256", "typ": "JWT"}}"#
        )

        let theirs = try F.python([
            "sign", F.keys.get().path("rsa.pem"), "RS256", #"{"alg":"RS256","typ":"JWT"}"#,
            #"{"exp":\#(exp),"revision":5,"username":"alice"}"#,
        ])
        #expect(theirs.output.trimmingCharacters(in: .whitespacesAndNewlines) == token, "same bytes as golang-jwt's")
        #expect(signer.info(token: token, currentRevision: 99) == AuthInfo(username: "alice", revision: 5))
    }

    @Test func es256BothWays() throws {
        let clock = ManualClock()
        var signer = try provider(.es256, priv: "p256.pem", pub: nil, clock: clock)
        let token = try signer.assign(username: "bob", revision: 8, index: 0, prefix: "")
        let verified = try F.python(["verify", F.keys.get().path("p256.pub"), token])
        #expect(verified.status == 0, "python's cryptography accepts our ES256 signature")
        #expect(verified.output.contains(#""username": "bob""#))

        let exp = clock.unixSeconds + 60
        let theirs = try F.python([
            "sign", F.keys.get().path("p256.pem"), "ES256", #"{"alg":"ES256","typ":"JWT"}"#,
            #"{"exp":\#(exp),"revision":3,"username":"carol"}"#,
        ]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        var verifier = try provider(.es256, priv: nil, pub: "p256.pub", clock: clock)
        #expect(verifier.isVerifyOnly)
        #expect(verifier.info(token: theirs, currentRevision: 1) == AuthInfo(username: "carol", revision: 3))
        #expect(verifier.info(token: token, currentRevision: 1) == AuthInfo(username: "bob", revision: 8))
        #expect(authError { _ = try verifier.assign(username: "x", revision: 1, index: 0, prefix: "") } == .verifyOnly)
    }

    @Test func externallySignedRS256AndPS256Verify() throws {
        let clock = ManualClock()
        let exp = clock.unixSeconds + 60
        for method in [JWTSignMethod.rs256, .rs384, .ps256, .ps512] {
            let theirs = try F.python([
                "sign", F.keys.get().path("rsa.pem"), method.rawValue, #"{"alg":"\#(method.rawValue)","typ":"JWT"}"#,
                #"{"exp":\#(exp),"revision":2,"username":"dave"}"#,
            ]).output.trimmingCharacters(in: .whitespacesAndNewlines)
            var verifier = try provider(method, priv: nil, pub: "rsa.pub", clock: clock)
            #expect(verifier.info(token: theirs, currentRevision: 1)?.username == "dave", "\(method)")
            var signer = try provider(method, priv: "rsa.pem", pub: nil, clock: clock)
            let ours = try signer.assign(username: "erin", revision: 4, index: 0, prefix: "")
            #expect(try F.python(["verify", F.keys.get().path("rsa.pub"), ours]).status == 0, "\(method)")
        }
    }

    @Test(arguments: [
        (JWTSignMethod.rs256, "rsa-pkcs1.pem"), (.rs512, "rsa.pem"), (.ps384, "rsa.pem"), (.es384, "p384.pem"),
        (.es512, "p521.pem"), (.es512, "p521-pkcs8.pem"),
    ])
    func everyMethodRoundTrips(method: JWTSignMethod, key: String) throws {
        let clock = ManualClock()
        var signer = try provider(method, priv: key, pub: nil, clock: clock)
        let token = try signer.assign(username: "frank", revision: 6, index: 0, prefix: "")
        #expect(signer.info(token: token, currentRevision: 1) == AuthInfo(username: "frank", revision: 6))
    }

    @Test func hmacRoundTripsAndNeedsTheSecret() throws {
        var provider = F.hmacProvider(clock: ManualClock().authClock)
        let token = try provider.assign(username: "gina", revision: 2, index: 0, prefix: "")
        #expect(provider.info(token: token, currentRevision: 1)?.username == "gina")
        var other = try JWTTokenProvider(method: .hs256, privateKey: Array("other".utf8), publicKey: [])
        #expect(other.info(token: token, currentRevision: 1) == nil)
        #expect(throws: AuthConfigurationError.missingKey) {
            try JWTTokenProvider(method: .hs512, privateKey: [], publicKey: Array("x".utf8))
        }
    }

    @Test func expiredTokensAreRefused() throws {
        let clock = ManualClock()
        var provider = try JWTTokenProvider(
            method: .hs256, privateKey: Array("k".utf8), publicKey: [], ttl: .seconds(10), clock: clock.authClock)
        let token = try provider.assign(username: "alice", revision: 1, index: 0, prefix: "")
        clock.advance(by: .seconds(9))
        #expect(provider.info(token: token, currentRevision: 1) != nil)
        clock.advance(by: .seconds(1))
        #expect(provider.info(token: token, currentRevision: 1) == nil, "valid only while now < exp, as golang-jwt v4")
    }

    func flipped(_ text: String, at offset: Int) -> String {
        var characters = Array(text)
        characters[offset] = characters[offset] == "A" ? "B" : "A"
        return String(characters)
    }

    @Test func tamperedTokensAreRefused() throws {
        let clock = ManualClock()
        var provider = try provider(.rs256, priv: "rsa.pem", pub: nil, clock: clock)
        let token = try provider.assign(username: "alice", revision: 1, index: 0, prefix: "")
        let parts = token.split(separator: ".").map(String.init)
        let forgedClaims = JWTEncoding.base64URL(
            #"{"exp":\#(clock.unixSeconds + 300),"revision":1,"username":"root"}"#.utf8)
        let variants = [
            parts[0] + "." + forgedClaims + "." + parts[2],
            // A flipped character inside the signature (the last character of an RSA-2048 signature carries unused
            // padding bits, which Go's lenient base64 ignores too, so it is not the one to change).
            parts[0] + "." + parts[1] + "." + flipped(parts[2], at: parts[2].count / 2),
            JWTEncoding.base64URL(#"{"alg":"HS256","typ":"JWT"}"#.utf8) + "." + parts[1] + "." + parts[2],
            JWTEncoding.base64URL(#"{"alg":"none","typ":"JWT"}"#.utf8) + "." + parts[1] + ".",
            parts[0] + "." + parts[1],
            token + ".",
            parts[0] + "=." + parts[1] + "." + parts[2],
            "",
        ]
        for variant in variants {
            #expect(provider.info(token: variant, currentRevision: 1) == nil, "\(variant)")
        }
        #expect(provider.info(token: token, currentRevision: 1) != nil)
    }

    @Test func claimsMustHaveTheRightTypes() throws {
        var provider = F.hmacProvider(clock: ManualClock().authClock)
        let header = JWTEncoding.base64URL(#"{"alg":"HS256","typ":"JWT"}"#.utf8)
        func signed(_ claims: String) throws -> String {
            let input = header + "." + JWTEncoding.base64URL(claims.utf8)
            let signature = try JWTSigner.sign(Array(input.utf8), method: .hs256, key: provider.key)
            return input + "." + JWTEncoding.base64URL(signature)
        }
        #expect(
            provider.info(token: try signed(#"{"revision":1,"username":"a"}"#), currentRevision: 1) != nil,
            "no exp: valid")
        #expect(
            provider.info(token: try signed(#"{"exp":"soon","revision":1,"username":"a"}"#), currentRevision: 1) == nil)
        #expect(provider.info(token: try signed(#"{"revision":"1","username":"a"}"#), currentRevision: 1) == nil)
        #expect(provider.info(token: try signed(#"{"revision":1,"username":7}"#), currentRevision: 1) == nil)
        #expect(provider.info(token: try signed(#"{"revision":1}"#), currentRevision: 1) == nil)
        #expect(
            provider.info(token: try signed(#"{"nbf":9999999999,"revision":1,"username":"a"}"#), currentRevision: 1)
                == nil)
        #expect(provider.info(token: try signed(#"[1,2]"#), currentRevision: 1) == nil)
    }

    @Test func usernamesAreEscapedAsGoEscapesThem() throws {
        #expect(JWTEncoding.goJSONString("a<b>&\"\\\n\u{1}\u{2028}é") == #""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é""#)
        var provider = F.hmacProvider(clock: ManualClock().authClock)
        let token = try provider.assign(username: "<odd \"name\">", revision: 1, index: 0, prefix: "")
        #expect(provider.info(token: token, currentRevision: 1)?.username == "<odd \"name\">")
    }

    /// golang-jwt takes a certificate in place of a public key (etcd's e2e tests give `pub-key=server.crt`).
    @Test(arguments: [(JWTSignMethod.rs256, "rsa"), (.es256, "p256")])
    func aCertificateServesAsThePublicKey(method: JWTSignMethod, key: String) throws {
        let clock = ManualClock()
        var signer = try provider(method, priv: key + ".pem", pub: key + ".crt", clock: clock)
        let token = try signer.assign(username: "ann", revision: 3, index: 0, prefix: "")
        var verifier = try provider(method, priv: nil, pub: key + ".crt", clock: clock)
        #expect(verifier.info(token: token, currentRevision: 3)?.username == "ann")
        var other = try provider(method, priv: nil, pub: key == "rsa" ? "rsa2.pub" : "p384.pub", clock: clock)
        #expect(other.info(token: token, currentRevision: 3) == nil)
    }

    @Test func keyRulesFollowEtcd() throws {
        let keys = try F.keys.get()
        // A mismatched RSA pair with the same exponent passes etcd's (lenient) check: the private key is used.
        var lenient = try JWTTokenProvider(
            method: .rs256, privateKey: keys.bytes("rsa.pem"), publicKey: keys.bytes("rsa2.pub"))
        let token = try lenient.assign(username: "a", revision: 1, index: 0, prefix: "")
        #expect(try F.python(["verify", keys.path("rsa.pub"), token]).status == 0)
        // EC keys on different curves differ in every component: refused.
        #expect(throws: AuthConfigurationError.keyMismatch) {
            try JWTTokenProvider(method: .es256, privateKey: keys.bytes("p256.pem"), publicKey: keys.bytes("p384.pub"))
        }
        #expect(throws: AuthConfigurationError.missingKey) {
            try JWTTokenProvider(method: .rs256, privateKey: [], publicKey: [])
        }
        #expect(throws: AuthConfigurationError.keyMustBePEM) {
            try JWTTokenProvider(method: .rs256, privateKey: Array("not a pem".utf8), publicKey: [])
        }
        #expect(throws: AuthConfigurationError.notECPrivateKey) {
            try JWTTokenProvider(method: .es256, privateKey: keys.bytes("rsa.pem"), publicKey: [])
        }
        // An ES method with a key on another curve loads (as in etcd) but cannot sign.
        var wrongCurve = try JWTTokenProvider(method: .es384, privateKey: keys.bytes("p256.pem"), publicKey: [])
        #expect(
            authError { _ = try wrongCurve.assign(username: "a", revision: 1, index: 0, prefix: "") } == .invalidKey)
    }
}

/// `--auth-token` parsing and Go durations.
@Suite struct TokenOptionTests {
    func files(_ keys: [String: [UInt8]]) -> (String) throws -> [UInt8] {
        { path in
            guard let bytes = keys[path] else { throw AuthConfigurationError("no such file") }
            return bytes
        }
    }

    @Test func decomposesLikeEtcd() throws {
        let simple = try AuthTokenOptions(parsing: "simple")
        #expect(simple.type == "simple" && simple.parameters.isEmpty)
        #expect(try AuthTokenOptions(parsing: "").type == "")
        let jwt = try AuthTokenOptions(parsing: "jwt,pub-key=/a.pub,priv-key=/a,sign-method=RS256,ttl=10m")
        #expect(jwt.parameters == ["pub-key": "/a.pub", "priv-key": "/a", "sign-method": "RS256", "ttl": "10m"])
        for bad in ["simple,", "jwt,ttl", "jwt,a=b=c", "jwt,ttl=1m,ttl=2m"] {
            #expect(throws: AuthConfigurationError.invalidAuthOptions, "\(bad)") { try AuthTokenOptions(parsing: bad) }
        }
    }

    @Test func makesTheProviderTheOptionNames() throws {
        let secret = files(["/secret": Array("s".utf8)])
        #expect(try makeTokenProvider(authToken: "simple", readFile: secret) is SimpleTokenProvider)
        #expect(try makeTokenProvider(authToken: "simple,ignored=1", readFile: secret) is SimpleTokenProvider)
        #expect(try makeTokenProvider(authToken: "", readFile: secret) is NopTokenProvider)
        let jwt = try makeTokenProvider(authToken: "jwt,sign-method=HS256,priv-key=/secret,ttl=1h30m", readFile: secret)
        #expect((jwt as? JWTTokenProvider)?.ttl == .seconds(5400))
        let defaulted = try makeTokenProvider(authToken: "jwt,sign-method=HS512,priv-key=/secret", readFile: secret)
        #expect((defaulted as? JWTTokenProvider)?.ttl == .seconds(300))
        let simple = try makeTokenProvider(authToken: "simple", simpleTokenTTL: .seconds(60), readFile: secret)
        #expect((simple as? SimpleTokenProvider)?.ttl == .seconds(60))
    }

    @Test(arguments: [
        ("bogus", AuthConfigurationError.invalidAuthOptions),
        ("jwt", .invalidAuthOptions),
        ("jwt,sign-method=RS1024,priv-key=/secret", .invalidAuthOptions),
        ("jwt,sign-method=HS256,priv-key=/missing", .invalidAuthOptions),
        ("jwt,sign-method=HS256,priv-key=/secret,ttl=5 minutes", .invalidAuthOptions),
        ("jwt,sign-method=HS256", .missingKey),
        ("jwt,sign-method=RS256", .missingKey),
        (
            "jwt,sign-method=EdDSA,priv-key=/secret",
            AuthConfigurationError("unsupported signing method: *jwt.SigningMethodEd25519")
        ),
        ("jwt,sign-method=none", AuthConfigurationError("unsupported signing method: *jwt.signingMethodNone")),
    ])
    func refusesWhatEtcdRefuses(option: String, error: AuthConfigurationError) {
        #expect(throws: error) { try makeTokenProvider(authToken: option, readFile: files(["/secret": [1]])) }
    }
}
