/// etcd's `--auth-token` option string, parsed as etcd's `decomposeOpts` and `NewTokenProvider` parse it.
///
/// The string is `TYPE[,NAME=VALUE]...`: `simple` (the default), `jwt` (with `sign-method`, `pub-key`, `priv-key`,
/// `ttl`), or empty for no tokens at all. Every parameter must be exactly one `NAME=VALUE` pair (a value cannot
/// contain `=`) and may appear once; anything else is `auth: invalid auth options`, as is an unknown type.
public struct AuthTokenOptions: Sendable, Equatable {
    public var type: String
    public var parameters: [String: String]

    public init(parsing options: String) throws(AuthConfigurationError) {
        let fields = options.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        type = fields.first ?? ""
        parameters = [:]
        for field in fields.dropFirst() {
            let pair = field.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
            guard pair.count == 2, parameters[pair[0]] == nil else { throw .invalidAuthOptions }
            parameters[pair[0]] = pair[1]
        }
    }
}

/// Makes the token provider an `--auth-token` option asks for.
///
/// - Parameters:
///   - authToken: the `--auth-token` value (etcd's default is `simple`).
///   - simpleTokenTTL: `--auth-token-ttl` for simple tokens (default 300 s; JWTs use their own `ttl=`).
///   - clock: the wall clock tokens expire by.
///   - readFile: reads a key file named in the options (the seam tests use to hand over bytes).
public func makeTokenProvider(
    authToken: String,
    simpleTokenTTL: Duration = SimpleTokenProvider.defaultTTL,
    clock: AuthClock = .system,
    readFile: (String) throws -> [UInt8]
) throws(AuthConfigurationError) -> any TokenProvider {
    let options = try AuthTokenOptions(parsing: authToken)
    switch options.type {
    case "simple":
        return SimpleTokenProvider(ttl: simpleTokenTTL, clock: clock)
    case "jwt":
        return try JWTTokenProvider(parameters: options.parameters, clock: clock, readFile: readFile)
    case "":
        return NopTokenProvider()
    default:
        throw .invalidAuthOptions
    }
}
