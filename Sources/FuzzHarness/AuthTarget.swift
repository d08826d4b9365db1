import Auth
import Foundation

/// Auth tokens as clients send them (the `token` gRPC metadata, the JSON gateway's `Authorization` header), before
/// any permission is checked: every byte is chosen by a client that need not have authenticated, so a crash here
/// would let anyone stop a member. The bytes go to the simple token provider (the token's shape, then its lookup),
/// to JWT providers of each family (RS256, PS256, ES256, HS256: base64url segments, the header and claims JSON,
/// the time claims, signature verification) with fixed keys and a fixed clock, so that an input resolves the same
/// way on every run; and, as an `--auth-token` value, to the option parser and the JWT parameters (`ttl` is a Go
/// duration).
enum AuthTarget {
    /// The fixed time the providers live at; the seed tokens were issued at it, so they resolve.
    static let now: Duration = .seconds(1_780_000_000)
    static let clock = AuthClock { now }
    static let secret = Array("quorum-fuzz-hmac-secret".utf8)
    /// Made with `openssl genrsa 2048` and `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` for the
    /// fuzzer only: fixed, so that seed tokens keep verifying.
    static let rsaKey = """
        -----BEGIN RSA PRIVATE KEY-----
        MIIEowIBAAKCAQEAqRQX+sgZ956TR9ptSfZcNFhKuHG+dxD5HxcD1c2a6euLW0az
        SDdSDGDELcBHnIhv/He7UM9lSzehUPXCjqYIzEpVX27KHIoYc0muDFiUfeRXVVuj
        QTTTmmcoQ64i1PwuzEWO3nU26LHg2+rz68a6tDfUqLcaejsKu5rVPIoLRqKmitG+
        kKfrzKx98QPsKcm/K6EY6bLIKrAkklRh/6m31ApIIDfjUEoguQr0Ki1XEdIh6BbO
        lKm3eoMs1j69iy4WetzvEhNrdcDIcReHHi+i6W37hfFJ3vazPoxSkTOFIyzDSvel
        KukL25+FM5+aMwea8DcaG9JOkdnGNgVpQo8vpQIDAQABAoIBAELFLacayK5yECWr
        C8fOo6EEURW/zYDF0ivF8fzIAmpoW5NDO1/EgQFkYXTT3zPg6aChQ/bowE7Q/EK1
        mwysYwMSQ965KNXWb0twCGzVumZw+1A5LSJ+EyaBoHQB272SjYSb34zYa0O/o1YV
        1hgBVg//kFrEXI9yq41k2trahRNyWKeaBw4UxzVvAUKgA8W00v/NrR0XRMud2l+C
        Q+u3ZbAr3FZQa7RRXKVGRXNPW3d+6Y6srDr6TAAy3dXF5XVUxZua9SBVa8BUqbDL
        cCPwbHXh88nwjDvfJ718sytLbJNiOlZMng+tmhCscC1CegOSfoqUxdganwHLhvk/
        L/7KxK0CgYEA6ly+sRFBEE4jtAseYIn0+AXJduUkElS/YjkuGiJRAbh7/HH3NOAy
        PmR8HzkLUEV2x6dQLpkoA7kmq4dKPcbzSpBQp9yMYb5J6zdxwE/L2uGuCRmj7yVu
        /Ez/Ul3PhMf3DCraPGaJJ4o7hMBVdWMvVFWL+/csYJOvsUgy3KLtmssCgYEAuLBW
        d1hAz+ZA80SD7Ek+4FM/Rqw7rstM/y/TpLxENlqv+I0oiUdCxhBvvur48x2kDdN5
        LQ6zYIsyfGptHOO7SWo2BIcyEdwZGmYtcCnZp05wkk8jj7gF1YqRGWd2jxnyuTUT
        RFgMCO7qoCP5RM9nkl8rG8zT1azzUzo45LyQ4U8CgYAy+tnASrCMi3LYx1JkTZ4s
        FZYtdsrR8f1vsGCG7tAQP8E4uNG9fsdvKwyU/iOn4nRkGdEnUcmShcQTq+pKZeym
        W54v5Znj6TDLKdRksPb3NgBVmm4+pzXtTBJ+KEnr6FOlIe03FlbfcwJfbjcowdqZ
        zcIVnT7aA0ZEmh/2PrrQ4QKBgCnGeUh1hfOAuaBNFyoTR02mhuGNg9J92eS/BLh2
        fVduG++0vj6PB+OVRDGDJNyZD8qw0vAGKzzjP4A08oleWba5d45+piy0BFmcUxrT
        3I+jhoMRs5GGposu1LNSW9byn5yVDM6gu9gpcpjWikOuRlctf6rCIghrHn7s5IGY
        xYyxAoGBAIoqVUpH5jCyWm8qPyHrKOm0Cq7hiqzKg+n7nS4BYWOxVKXhyafrvDK0
        YedHdpb8UIfwvG3SCD43IQ/u96QbEzFK8zLAA0p81g5ymL/F89xozMbtPXZfvhuf
        5TcjC3VooP7A/X1JNkaxctj27XdUUNdZshOLcASuvz535BHrpzKq
        -----END RSA PRIVATE KEY-----
        """
    static let ecKey = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaeMewhPm/E0BCox+
        5B00Ax4VKUwUz639IlBu9OnPoWOhRANCAASBC7n14XyffHVJw9FAd2TGl0tbA4ch
        DGLSEcIKt7+ITNMV8Bc2ZCCSsFFj8y4FUsX/HH5jLL+oNqKiCnO+EU+k
        -----END PRIVATE KEY-----
        """
    /// A simple token the simple provider knows.
    static let simpleToken = "abcdefghijklmnop.7"

    static func providers() -> [JWTTokenProvider] {
        let keys: [(JWTSignMethod, [UInt8])] = [
            (.rs256, Array(rsaKey.utf8)), (.ps256, Array(rsaKey.utf8)), (.es256, Array(ecKey.utf8)), (.hs256, secret),
        ]
        return keys.compactMap { method, key in
            try? JWTTokenProvider(method: method, privateKey: key, publicKey: [], clock: clock)
        }
    }

    /// Made once: RSA key parsing is the slow part of a run.
    static let jwt = providers()

    static func run(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        var simple = SimpleTokenProvider(ttl: .seconds(300), clock: clock)
        simple.enable()
        _ = try? simple.assign(username: "root", revision: 1, index: 7, prefix: "abcdefghijklmnop")
        _ = SimpleTokenProvider.index(of: text)
        _ = simple.info(token: text, currentRevision: 1)
        for var provider in jwt { _ = provider.info(token: text, currentRevision: 1) }
        _ = try? makeTokenProvider(authToken: text, clock: clock) { _ in Array(secret) }
    }

    /// The seed corpus (`quorum-fuzz seeds-auth OUTDIR`, run by scripts/fuzz-seeds.sh): a valid token of every
    /// provider (as etcd's providers write them, byte for byte) and `--auth-token` values etcd accepts.
    public static func writeSeeds(to directory: String) throws {
        var seeds: [(String, String)] = [("simple-token", simpleToken)]
        for var provider in jwt {
            let token = try provider.assign(username: "root", revision: 3, index: 0, prefix: "")
            seeds.append(("jwt-\(provider.signMethod.rawValue)", token))
        }
        seeds += [
            ("option-simple", "simple"),
            ("option-jwt", "jwt,pub-key=/k.pub,priv-key=/k.pem,sign-method=RS256,ttl=10m30s"),
            ("option-hmac", "jwt,priv-key=/s,sign-method=HS512,ttl=1h"),
        ]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, text) in seeds {
            try Data(text.utf8).write(to: URL(fileURLWithPath: directory).appendingPathComponent(name))
        }
    }
}
