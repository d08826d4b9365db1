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

/// Go's `time.ParseDuration`, which etcd uses for the JWT `ttl=` option: an optional sign, then one or more
/// decimal numbers (with an optional fraction) each followed by a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`,
/// `h`), e.g. `5m`, `1h30m`, `1.5s`; a bare `0` is allowed. Returns nil for anything Go would refuse.
func parseGoDuration(_ text: String) -> Duration? {
    var scalars = Array(text.unicodeScalars)[...]
    var negative = false
    if let sign = scalars.first, sign == "-" || sign == "+" {
        negative = sign == "-"
        scalars = scalars.dropFirst()
    }
    if scalars.count == 1 && scalars.first == "0" { return .zero }
    guard !scalars.isEmpty else { return nil }

    let units: [(String, Int64)] = [
        ("ns", 1), ("us", 1_000), ("µs", 1_000), ("μs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000),
    ]
    var total: Int64 = 0
    while !scalars.isEmpty {
        let integerDigits = scalars.prefix { ("0"..."9").contains($0) }
        scalars = scalars.dropFirst(integerDigits.count)
        var fractionDigits = ArraySlice<Unicode.Scalar>()
        var hasPoint = false
        if scalars.first == "." {
            hasPoint = true
            scalars = scalars.dropFirst()
            fractionDigits = scalars.prefix { ("0"..."9").contains($0) }
            scalars = scalars.dropFirst(fractionDigits.count)
        }
        guard !integerDigits.isEmpty || (hasPoint && !fractionDigits.isEmpty) else { return nil }
        let unitText = String(String.UnicodeScalarView(scalars.prefix { $0 != "." && !("0"..."9").contains($0) }))
        scalars = scalars.dropFirst(unitText.unicodeScalars.count)
        guard let unit = units.first(where: { $0.0 == unitText })?.1 else { return nil }

        var value: Int64 = 0
        for digit in integerDigits {
            let (shifted, o1) = value.multipliedReportingOverflow(by: 10)
            let (added, o2) = shifted.addingReportingOverflow(Int64(digit.value - 48))
            guard !o1, !o2 else { return nil }
            value = added
        }
        let (scaled, o3) = value.multipliedReportingOverflow(by: unit)
        guard !o3 else { return nil }
        var component = scaled
        if !fractionDigits.isEmpty {
            var fraction = 0.0
            var scale = 1.0
            for digit in fractionDigits.prefix(18) {
                fraction = fraction * 10 + Double(digit.value - 48)
                scale *= 10
            }
            let (withFraction, o4) = component.addingReportingOverflow(Int64(fraction * (Double(unit) / scale)))
            guard !o4 else { return nil }
            component = withFraction
        }
        let (sum, o5) = total.addingReportingOverflow(component)
        guard !o5 else { return nil }
        total = sum
    }
    return .nanoseconds(negative ? -total : total)
}
