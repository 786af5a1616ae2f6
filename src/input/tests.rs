//! The input readers' tests: strict where we rely on a field, lenient
//! where newer Nix adds one.

mod readers {
    use super::super::attrs::*;
    use std::path::PathBuf;

    use super::super::path_info::*;
    use crate::compress::Compression;
    use crate::format::store_path::StorePath;
    use crate::input::shard::Shard;

    /// Content-addressed (`CA` below, referring to itself and to `B`).
    const A: &str = "/nix/store/sqz3s1nwrsy2y0436d6wg9hw7abfpqf0-a";
    const B: &str = "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b";
    const HASH: &str = "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw";
    /// What an invalid path's error says to do.
    const HINT: &str = "; build or fetch it first (nix-build, nix-store --realise) and run nix path-info again";
    const SIG: &str =
        "cache.example.org-1:aItucb2jMEdvkqYZji7WOy01UemOpGXpZCYvu0qXLmVNaoV4Mj/41K8uzPznXew6f1YgBxjkdjZl/N3le94ZWA==";

    // Shaped as Nix 2.8 writes the builder's attrs file.
    fn attrs_json() -> String {
        format!(
            r#"{{"closure":[
                {{"closureSize":1072,"narHash":"{HASH}","narSize":952,"path":"{B}","references":["{A}","{B}"]}},
                {{"closureSize":120,"narHash":"{HASH}","narSize":120,"path":"{A}","references":["{A}","{B}"],
                  "valid":true,"ca":"fixed:r:sha256:{}", "somethingNew":{{"x":1}}}}],
              "compression":"xz","compressionLevel":null,"name":"binary-cache",
              "outputs":{{"out":"/nix/store/00000000000000000000000000000000-binary-cache"}}}}"#,
            &HASH[7..]
        )
    }

    #[test]
    fn parses_builder_attrs() {
        let attrs = Attrs::parse(&attrs_json(), "/nix/store").unwrap();
        assert_eq!(attrs.compression, Some(Compression::Xz));
        assert_eq!(attrs.compression_level, None);
        assert_eq!(attrs.out.unwrap().to_str().unwrap(), "/nix/store/00000000000000000000000000000000-binary-cache");
        // Sorted by path, references sorted, `ca` kept, unknown fields ignored.
        let [a, b] = &attrs.closure[..] else { panic!("expected two entries") };
        assert_eq!((a.path.as_str(), b.path.as_str()), (A, B));
        assert_eq!(b.references.iter().map(StorePath::as_str).collect::<Vec<_>>(), [A, B]);
        assert_eq!(a.ca.unwrap().to_string(), format!("fixed:r:sha256:{}", &HASH[7..]));
        assert_eq!(b.nar_hash.to_string(), HASH);
    }

    #[test]
    fn parses_both_path_info_forms() {
        let sri = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let array = format!(
            r#"[{{"path":"{A}","narHash":"{sri}","narSize":8,"references":[],"deriver":null,"signatures":["{SIG}"]}}]"#
        );
        let object = format!(
            r#"{{"{A}":{{"narHash":"{sri}","narSize":8,"references":[],"deriver":null,"signatures":["{SIG}"],"ca":null}}}}"#
        );
        let from_array = parse_path_info_json(&array, "/nix/store").unwrap();
        let from_object = parse_path_info_json(&object, "/nix/store").unwrap();
        assert_eq!(from_array, from_object);
        assert_eq!(from_array[0].signatures, [SIG.parse().unwrap()]);
    }

    fn attrs_error(json: &str) -> String {
        format!("{:#}", Attrs::parse(json, "/nix/store").unwrap_err())
    }

    #[test]
    fn object_form_entries_may_repeat_their_path() {
        let object = format!(r#"{{"{A}":{{"path":"{A}","narHash":"{HASH}","narSize":8,"references":[]}}}}"#);
        assert_eq!(parse_path_info_json(&object, "/nix/store").unwrap()[0].path.as_str(), A);
    }

    #[test]
    fn escaped_strings_read_like_plain_ones() {
        // JSON may escape `/`; such strings cannot be borrowed from the input.
        let escaped = A.replace('/', "\\/");
        let json = format!(r#"[{{"path":"{escaped}","narHash":"{HASH}","narSize":8,"references":["{escaped}"]}}]"#);
        let info = &parse_path_info_json(&json, "/nix/store").unwrap()[0];
        assert_eq!((info.path.as_str(), info.references[0].as_str()), (A, A));
    }

    #[test]
    fn compression_level_may_be_negative() {
        let level = |v: &str| Attrs::parse(&format!(r#"{{"closure":[],"compressionLevel":{v}}}"#), "/nix/store");
        assert_eq!(level("9").unwrap().compression_level, Some(9));
        assert_eq!(level("-5").unwrap().compression_level, Some(-5));
    }

    #[test]
    fn errors_name_the_entry_they_are_in() {
        let entry = format!(r#"{{"path":"{A}","narHash":"{HASH}","narSize":8,"references":[]}}"#);
        let json = format!(r#"[{entry},{entry},{{"path":"{B}"}}]"#);
        let err = format!("{:#}", parse_path_info_json(&json, "/nix/store").unwrap_err());
        assert!(err.starts_with("closure entry 2: "), "{err}");
    }

    #[test]
    fn priority_and_want_mass_query_are_typed() {
        let parse = |v: &str| Attrs::parse(&format!(r#"{{"closure":[],{v}}}"#), "/nix/store");
        let attrs = parse(r#""priority":30,"wantMassQuery":true"#).unwrap();
        assert_eq!((attrs.priority, attrs.want_mass_query), (Some(30), Some(true)));
        let attrs = parse(r#""priority":null,"wantMassQuery":null"#).unwrap();
        assert_eq!((attrs.priority, attrs.want_mass_query), (None, None));
        let attrs = parse(r#""writeNarListing":true,"indexDebugInfo":false"#).unwrap();
        assert_eq!((attrs.write_nar_listing, attrs.index_debug_info), (true, false));
        for (bad, field) in [
            (r#""priority":"30""#, "`priority`"),
            (r#""priority":1.5"#, "`priority`"),
            (r#""wantMassQuery":1"#, "`wantMassQuery`"),
            (r#""writeNarListing":"yes""#, "`writeNarListing`"),
            (r#""indexDebugInfo":0"#, "`indexDebugInfo`"),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn shard_and_shards_come_together_and_are_checked() {
        let parse = |v: &str| Attrs::parse(&format!(r#"{{"closure":[]{v}}}"#), "/nix/store");
        assert_eq!(parse("").unwrap().shard, None);
        assert_eq!(parse(r#","shard":null,"shards":null"#).unwrap().shard, None);
        assert_eq!(parse(r#","shard":1,"shards":3"#).unwrap().shard, Some(Shard { index: 1, count: 3 }));
        for (bad, expected) in [
            (r#","shard":0"#, "`shard` is given without `shards`"),
            (r#","shards":2"#, "`shards` is given without `shard`"),
            (r#","shard":2,"shards":2"#, "`shard` must be below `shards` (2)"),
            (r#","shard":0,"shards":0"#, "`shards` must be at least 1"),
            (r#","shard":-1,"shards":2"#, "`shard` must be a non-negative integer"),
            (r#","shard":0,"shards":"2""#, "`shards` must be a non-negative integer"),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn reuse_is_a_list_of_directories() {
        let parse = |v: &str| Attrs::parse(&format!(r#"{{"closure":[],{v}}}"#), "/nix/store");
        assert!(parse(r#""priority":null"#).unwrap().reuse.is_empty());
        let attrs = parse(r#""reuse":["/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-cache","/srv/c"]"#).unwrap();
        assert_eq!(attrs.reuse, [PathBuf::from("/nix/store/q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-cache"), "/srv/c".into()]);
        for (bad, says) in [
            (r#""reuse":"/srv/c""#, "field `reuse` must be a list of directories, not a string"),
            (r#""reuse":["/srv/c",1]"#, "field `reuse`: element 1 must be a directory, not a number"),
            (r#""reuse":[""]"#, "field `reuse`: element 0 must be a directory, not empty"),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn max_memory_is_a_size_or_bytes() {
        let max_memory = |v: &str| Attrs::parse(&format!(r#"{{"closure":[],"maxMemory":{v}}}"#), "/nix/store");
        assert_eq!(max_memory("null").unwrap().max_memory, None);
        assert_eq!(max_memory(r#""1G""#).unwrap().max_memory, Some(1 << 30));
        assert_eq!(max_memory("4096").unwrap().max_memory, Some(4096));
        for bad in ["0", "-1", "true", r#""lots""#, "1.5"] {
            let err = format!("{:#}", max_memory(bad).unwrap_err());
            assert!(err.contains("`maxMemory`"), "{bad}: {err}");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_path() {
        let entry = |fields: &str| format!(r#"{{"closure":[{{"path":"{A}",{fields}}}]}}"#);
        let cases = [
            (entry(r#""narSize":1,"references":[]"#), "`narHash` is missing"),
            (entry(r#""narHash":"sha256:abc","narSize":1,"references":[]"#), "`narHash`"),
            (entry(&format!(r#""narHash":"{HASH}","narSize":-1,"references":[]"#)), "`narSize` must be"),
            (entry(&format!(r#""narHash":"{HASH}","narSize":1,"references":["/tmp/x"]"#)), "`references`"),
            (entry(&format!(r#""narHash":"{HASH}","narSize":1"#)), "`references` is missing"),
        ];
        for (json, expected) in cases {
            let err = attrs_error(&json);
            assert!(err.contains(expected) && err.contains(A), "{err:?} lacks {expected:?} or the path");
        }
        assert!(attrs_error("{}").contains("`closure` is missing"));
        assert!(attrs_error("{").contains("not valid JSON"));
        assert!(attrs_error("[]").contains("expected a JSON object at the top level"));
        assert!(attrs_error(r#"{"closure":[],"compression":"gzip"}"#).contains("gzip"));
        assert!(attrs_error(r#"{"closure":[],"compressionLevel":"9"}"#).contains("compressionLevel"));
        assert!(attrs_error(r#"{"closure":[{"path":"/nix/store/x"}]}"#).contains("not a valid store path"));
    }

    #[test]
    fn conflicting_duplicates_are_an_error() {
        let json = format!(
            r#"[{{"path":"{A}","narHash":"{HASH}","narSize":1,"references":[]}},
                {{"path":"{A}","narHash":"{HASH}","narSize":2,"references":[]}}]"#
        );
        let err = format!("{:#}", parse_path_info_json(&json, "/nix/store").unwrap_err());
        assert!(err.contains("listed twice") && err.contains("give the output of one `nix path-info"), "{err}");
    }

    /// A valid entry of the array form with `changes` applied (`None` removes
    /// the field).
    fn entry_with(changes: &[(&str, Option<serde_json::Value>)]) -> String {
        use serde_json::json;
        let mut entry = json!({
            "path": A, "narHash": HASH, "narSize": 952, "references": [A, B],
            "deriver": D, "signatures": [SIG], "ca": CA,
        });
        for (field, value) in changes {
            match value {
                Some(v) => entry[*field] = v.clone(),
                None => drop(entry.as_object_mut().unwrap().remove(*field)),
            }
        }
        format!("[{entry}]")
    }

    const D: &str = "/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-a.drv";
    const CA: &str = "fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw";

    #[test]
    fn the_valid_entry_of_the_table_parses() {
        let [info] = &parse_path_info_json(&entry_with(&[]), "/nix/store").unwrap()[..] else { panic!() };
        assert_eq!(info.deriver.as_ref().unwrap().as_str(), D);
        assert_eq!(info.signatures[0].to_string(), SIG);
        assert_eq!(info.ca.unwrap().to_string(), CA);
    }

    #[test]
    fn hostile_entries_are_refused_naming_path_and_field() {
        use serde_json::{Value, json};
        let b64 = &SIG["cache.example.org-1:".len()..];
        let other_nar = "nar/0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.nar";
        let injection = format!(
            "k:s\nURL: {other_nar}\nNarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\nNarSize: 8"
        );
        let s = |v: &str| Some(Value::String(v.to_owned()));
        let e0 = "closure entry 0: ";
        type Changes<'a> = Vec<(&'a str, Option<Value>)>;
        let cases: Vec<(Changes, String)> = vec![
            // The signature injection of issue 6, and its variants.
            (
                vec![("signatures", Some(json!([injection])))],
                format!(
                    "{e0}{A}: field `signatures`: {injection:?}: the signature must be 88 characters of base64 \
                     (64 bytes), not {}",
                    injection.len() - "k:".len()
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("{SIG}\nURL: {other_nar}")])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the signature must be 88 characters of base64 (64 bytes), \
                     not {}",
                    format!("{SIG}\nURL: {other_nar}"),
                    88 + "\nURL: ".len() + other_nar.len()
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("URL x\nk:{b64}")])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the key name \"URL x\\nk\" contains the character ' '",
                    format!("URL x\nk:{b64}")
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("k\n:{b64}")])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the key name \"k\\n\" contains the character '\\n'",
                    format!("k\n:{b64}")
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("k\0:{b64}")])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the key name \"k\\0\" contains the character '\\0'",
                    format!("k\0:{b64}")
                ),
            ),
            (
                vec![("signatures", Some(json!([format!("k:{}\n=", &b64[..86])])))],
                format!(
                    "{e0}{A}: field `signatures`: {:?}: the signature is not canonical base64: Invalid symbol 10, \
                     offset 86.",
                    format!("k:{}\n=", &b64[..86])
                ),
            ),
            (
                vec![("signatures", Some(json!([format!(":{b64}")])))],
                format!("{e0}{A}: field `signatures`: {:?}: the key name is empty", format!(":{b64}")),
            ),
            (
                vec![("signatures", s("k:s"))],
                format!("{e0}{A}: field `signatures` must be a list or null, not a string"),
            ),
            (
                vec![("signatures", Some(json!([1])))],
                format!("{e0}{A}: field `signatures` must hold strings, not a number"),
            ),
            (
                vec![("signatures", Some(json!(["k:s"])))],
                format!(
                    "{e0}{A}: field `signatures`: \"k:s\": the signature must be 88 characters of base64 (64 bytes), \
                     not 1"
                ),
            ),
            // Content addresses.
            (
                vec![("ca", s("garbage"))],
                format!(
                    "{e0}{A}: field `ca`: \"garbage\" is not a content address: expected text:<algo>:<hash> or \
                     fixed:[r:|git:]<algo>:<hash>"
                ),
            ),
            (
                vec![("ca", s(""))],
                format!(
                    "{e0}{A}: field `ca`: \"\" is not a content address: expected text:<algo>:<hash> or \
                     fixed:[r:|git:]<algo>:<hash>"
                ),
            ),
            (
                vec![("ca", s(&format!("{CA}\nURL: {other_nar}")))],
                format!(
                    "{e0}{A}: field `ca`: {:?} is not a content address: {:?} has the wrong length for a sha256 \
                     hash: 64 (base16), 52 (nix32) or 44 (base64) characters expected, not {}",
                    format!("{CA}\nURL: {other_nar}"),
                    format!("{}\nURL: {other_nar}", &CA[15..]),
                    52 + "\nURL: ".len() + other_nar.len()
                ),
            ),
            (
                vec![("ca", s(&format!("{}\n", &CA[..CA.len() - 1])))],
                format!(
                    "{e0}{A}: field `ca`: {:?} is not a content address: invalid nix32 sha256 hash {:?}: \
                     '\\n' is not a nix32 character",
                    format!("{}\n", &CA[..CA.len() - 1]),
                    format!("{}\n", &CA[15..CA.len() - 1])
                ),
            ),
            (
                vec![("ca", s(&format!("{}\0", &CA[..CA.len() - 1])))],
                format!(
                    "{e0}{A}: field `ca`: {:?} is not a content address: invalid nix32 sha256 hash {:?}: \
                     '\\0' is not a nix32 character",
                    format!("{}\0", &CA[..CA.len() - 1]),
                    format!("{}\0", &CA[15..CA.len() - 1])
                ),
            ),
            (
                vec![("ca", s("fixed:r:sha256-R7aF4gUsRhN3r44sBqPGK0U7ZYtUJc+8QLSqYxiQtJs="))],
                format!(
                    "{e0}{A}: field `ca`: \"fixed:r:sha256-R7aF4gUsRhN3r44sBqPGK0U7ZYtUJc+8QLSqYxiQtJs=\" is not a \
                     content address: expected <algo>:<hash>"
                ),
            ),
            (
                vec![("ca", s(&format!("fixed:r:sha1:{}", &CA[15..])))],
                format!(
                    "{e0}{A}: field `ca`: \"fixed:r:sha1:{}\" is not a content address: \"{}\" has the wrong length \
                     for a sha1 hash: 40 (base16), 32 (nix32) or 28 (base64) characters expected, not 52",
                    &CA[15..],
                    &CA[15..]
                ),
            ),
            (
                vec![("ca", s(&format!("text:sha512:{}", &CA[15..])))],
                format!(
                    "{e0}{A}: field `ca`: \"text:sha512:{}\" is not a content address: \"{}\" has the wrong length \
                     for a sha512 hash: 128 (base16), 103 (nix32) or 88 (base64) characters expected, not 52",
                    &CA[15..],
                    &CA[15..]
                ),
            ),
            (
                vec![("ca", s("text:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs"))],
                format!(
                    "{e0}{A}: field `ca`: \"text:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs\" is not a content address: \
                     a text content address uses sha256, not sha1"
                ),
            ),
            (
                vec![("ca", s(&format!("fixed:r:sha257:{}", &CA[15..])))],
                format!(
                    "{e0}{A}: field `ca`: \"fixed:r:sha257:{}\" is not a content address: unknown hash algorithm \
                     \"sha257\" (expected md5, sha1, sha256 or sha512)",
                    &CA[15..]
                ),
            ),
            (
                vec![("ca", s("fixed:r:sha256"))],
                format!("{e0}{A}: field `ca`: \"fixed:r:sha256\" is not a content address: expected <algo>:<hash>"),
            ),
            (
                vec![("ca", s(&format!("source:{}", &CA[6..])))],
                format!(
                    "{e0}{A}: field `ca`: \"source:{}\" is not a content address: unknown prefix \"source\" \
                     (expected text or fixed)",
                    &CA[6..]
                ),
            ),
            (vec![("ca", Some(json!(1)))], format!("{e0}{A}: field `ca` must be a string or null, not a number")),
            (
                vec![("ca", Some(json!({"x": CA})))],
                format!("{e0}{A}: field `ca` must be a string or null, not an object"),
            ),
            // Derivers.
            (
                vec![("deriver", s(B))],
                format!("{e0}{A}: field `deriver`: {B:?} is not a derivation: its name does not end in .drv"),
            ),
            (
                vec![("deriver", s(&format!("{D}\nSig: {SIG}")))],
                format!(
                    "{e0}{A}: field `deriver`: {:?} is not a valid store path: name contains the character '\\n'",
                    format!("{D}\nSig: {SIG}")
                ),
            ),
            (
                vec![("deriver", s(&format!("{D}\0")))],
                format!(
                    "{e0}{A}: field `deriver`: {:?} is not a valid store path: name contains the character '\\0'",
                    format!("{D}\0")
                ),
            ),
            (
                vec![("deriver", s("/tmp/x.drv"))],
                format!("{e0}{A}: field `deriver`: \"/tmp/x.drv\" is not in the store directory /nix/store"),
            ),
            (
                vec![("deriver", s(""))],
                format!("{e0}{A}: field `deriver`: \"\" is not in the store directory /nix/store"),
            ),
            (
                vec![("deriver", s("/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-.drv"))],
                format!(
                    "{e0}{A}: field `deriver`: \"/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-.drv\" is not a valid \
                     store path: name must not start with a dot"
                ),
            ),
            (
                vec![("deriver", Some(json!(true)))],
                format!("{e0}{A}: field `deriver` must be a string or null, not a boolean"),
            ),
            // The path.
            (
                vec![("path", s(&format!("{A}\nURL: {other_nar}")))],
                format!(
                    "{e0}field `path`: {:?} is not a valid store path: name contains the character '\\n'",
                    format!("{A}\nURL: {other_nar}")
                ),
            ),
            (
                vec![("path", s(&format!("{A}\0")))],
                format!(
                    "{e0}field `path`: {:?} is not a valid store path: name contains the character '\\0'",
                    format!("{A}\0")
                ),
            ),
            (
                vec![("path", s("/nix/store/x"))],
                format!(
                    "{e0}field `path`: \"/nix/store/x\" is not a valid store path: expected <32-character hash>-<name>"
                ),
            ),
            (vec![("path", None)], format!("{e0}field `path` is missing")),
            (vec![("path", Some(json!(null)))], format!("{e0}field `path` must be a string, not null")),
            (vec![("path", Some(json!([A])))], format!("{e0}field `path` must be a string, not a list")),
            // The NAR hash and size.
            (
                vec![("narHash", s(&format!("{HASH}\nNarSize: 8")))],
                format!(
                    "{e0}{A}: field `narHash`: {:?}: a sha256 digest has 52 (nix32) or 64 (hex) characters, not 63",
                    format!("{HASH}\nNarSize: 8")
                ),
            ),
            (
                vec![("narHash", s(&format!("{}\0", &HASH[..HASH.len() - 1])))],
                format!(
                    "{e0}{A}: field `narHash`: {:?}: '\\0' is not a nix32 character",
                    format!("{}\0", &HASH[..HASH.len() - 1])
                ),
            ),
            (
                vec![("narHash", s("md5:3y8bwfr609h3lh9ch0izcqq7fl"))],
                format!(
                    "{e0}{A}: field `narHash`: \"md5:3y8bwfr609h3lh9ch0izcqq7fl\": expected sha256:<nix32>, \
                     sha256:<hex> or sha256-<base64>"
                ),
            ),
            (vec![("narHash", None)], format!("{e0}{A}: field `narHash` is missing")),
            (vec![("narHash", Some(json!(5)))], format!("{e0}{A}: field `narHash` must be a string, not a number")),
            (
                vec![("narSize", Some(json!(-1)))],
                format!("{e0}{A}: field `narSize` must be a non-negative integer, not a number"),
            ),
            (
                vec![("narSize", Some(json!(1.5)))],
                format!("{e0}{A}: field `narSize` must be a non-negative integer, not a number"),
            ),
            (
                vec![("narSize", s("952"))],
                format!("{e0}{A}: field `narSize` must be a non-negative integer, not a string"),
            ),
            (vec![("narSize", None)], format!("{e0}{A}: field `narSize` is missing")),
            // References.
            (
                vec![("references", Some(json!([format!("{B}\nURL: {other_nar}")])))],
                format!(
                    "{e0}{A}: field `references`: {:?} is not a valid store path: name contains the character '\\n'",
                    format!("{B}\nURL: {other_nar}")
                ),
            ),
            (
                vec![("references", Some(json!([format!("{B}\0")])))],
                format!(
                    "{e0}{A}: field `references`: {:?} is not a valid store path: name contains the character '\\0'",
                    format!("{B}\0")
                ),
            ),
            (
                vec![("references", Some(json!([format!("{B} {A}")])))],
                format!(
                    "{e0}{A}: field `references`: {:?} is not a valid store path: name contains the character ' '",
                    format!("{B} {A}")
                ),
            ),
            (vec![("references", s(A))], format!("{e0}{A}: field `references` must be a list, not a string")),
            (
                vec![("references", Some(json!([[A]])))],
                format!("{e0}{A}: field `references` must hold strings, not a list"),
            ),
            (vec![("references", None)], format!("{e0}{A}: field `references` is missing")),
            // Nix's own marks of an invalid path.
            (
                vec![("valid", Some(json!(false)))],
                format!("{e0}{A}: not a valid store path in this store (path-info says \"valid\": false){HINT}"),
            ),
        ];
        for (changes, expected) in cases {
            let json = entry_with(&changes);
            let err = format!("{:#}", parse_path_info_json(&json, "/nix/store").unwrap_err());
            assert_eq!(err, expected, "for {json}");
        }
    }

    #[test]
    fn hostile_documents_are_refused() {
        let entry = format!(r#"{{"narHash":"{HASH}","narSize":1,"references":[]}}"#);
        let cases = [
            (format!(r#"{{"{A}":null}}"#), format!("{A}: not a valid store path in this store (path-info gave null){HINT}")),
            (
                format!(r#"{{"{A}":{{"path":"{B}","narHash":"{HASH}","narSize":1,"references":[]}}}}"#),
                format!("{A}: field `path` is \"{B}\", not the store path it is listed under"),
            ),
            (format!(r#"{{"{A}\n":{entry}}}"#), format!("field `path`: \"{A}\\n\" is not a valid store path: name contains the character '\\n'")),
            (format!(r#"[{entry}]"#), "closure entry 0: field `path` is missing".into()),
            (format!(r#"[{{"path":"{A}","path":"{A}"}}]"#), "closure entry 0: duplicate field `path` at line 1 column 63".into()),
            ("[1]".to_string(), "closure entry 0: invalid type: integer `1`, expected struct RawEntry at line 1 column 2".into()),
            ("[] x".into(), "not valid JSON: trailing characters at line 1 column 4".into()),
            ("\"x\"".into(), "invalid type: string \"x\", expected the JSON array or object that `nix path-info --json --recursive` prints at line 1 column 3".into()),
        ];
        for (json, expected) in cases {
            let err = format!("{:#}", parse_path_info_json(&json, "/nix/store").unwrap_err());
            assert_eq!(err, expected, "for {json}");
        }
        let attrs_cases = [
            (r#"{"closure":[],"closure":[]}"#.to_string(), "field `closure` appears twice".to_string()),
            (
                r#"{"closure":{}}"#.into(),
                "field `closure`: invalid type: map, expected a list of path infos at line 1 column 11".into(),
            ),
            (
                r#"{"closure":[],"outputs":"x"}"#.into(),
                "field `outputs`: invalid type: string \"x\", expected struct RawOutputs at line 1 column 27".into(),
            ),
            (
                r#"{"closure":[],"outputs":{"out":1}}"#.into(),
                "field `outputs.out` must be a string, not a number".into(),
            ),
            (r#"{"closure":[],"outputs":{}}"#.into(), "field `outputs.out` is missing".into()),
            (
                r#"{"closure":[],"compression":"xz\n"}"#.into(),
                "field `compression`: unknown compression \"xz\\n\": expected one of \"none\", \"xz\", \"zstd\"".into(),
            ),
            (
                format!(r#"{{"closure":[{{"path":"{A}","ca":"garbage"}}]}}"#),
                format!("closure entry 0: {A}: field `narHash` is missing"),
            ),
        ];
        for (json, expected) in attrs_cases {
            assert_eq!(attrs_error(&json), expected, "for {json}");
        }
    }
}

/// Random mutations of a valid closure must never panic, and whatever parses
/// must render to a narinfo that reads back as exactly what was parsed.
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::super::attrs::*;

    use super::super::path_info::*;
    use crate::compress::Compression;
    use crate::format::content_address::ContentAddress;
    use crate::format::narinfo::NarInfo;
    use crate::format::path_info::PathInfo;
    use crate::format::signature::Signature;
    use crate::format::store_path::StorePath;

    const STORE: &str = "/nix/store";
    const FIELDS: [&str; 8] = ["path", "narHash", "narSize", "references", "deriver", "signatures", "ca", "valid"];
    const SNIPPETS: [&str; 16] =
        ["\n", "\\n", "\r", "\\r", "\0", "\\u0000", "\"", "\\\"", ":", ": ", ",", "{", "]", "null", " ", "\\u2028"];

    fn valid_closure() -> Value {
        let (a, b) = ("/nix/store/sqz3s1nwrsy2y0436d6wg9hw7abfpqf0-a", "/nix/store/y2grnhdvfn46jk5m3g13m90yzbj9scgb-b");
        let sig = "cache.example.org-1:aItucb2jMEdvkqYZji7WOy01UemOpGXpZCYvu0qXLmVNaoV4Mj/41K8uzPznXew6f1YgBxjkdjZl/N3le94ZWA==";
        json!([
            {"path": a, "narHash": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "narSize": 120,
             "references": [a, b], "ca": "fixed:r:sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw",
             "signatures": [sig], "valid": true},
            {"path": b, "narHash": "sha256:1adfpa64hshm62r4plng0xkvvxaw9k4af6nv0ifxh1gga753wckw", "narSize": 952,
             "references": [a, b], "deriver": "/nix/store/0c1ax3xdhph1hmrxhiby8mcxh0qamv2p-b.drv",
             "signatures": [sig, sig.replace("cache.example.org-1", "other-key")], "closureSize": 1072},
        ])
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Remove { entry: usize, field: usize },
        Retype { entry: usize, field: usize, value: usize },
        Flip { at: usize, bits: u8 },
        Insert { at: usize, snippet: usize },
        Delete { at: usize },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (0..2usize, 0..FIELDS.len()).prop_map(|(entry, field)| Mutation::Remove { entry, field }),
            (0..2usize, 0..FIELDS.len(), 0..6usize).prop_map(|(entry, field, value)| Mutation::Retype {
                entry,
                field,
                value
            }),
            (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
            (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
            any::<usize>().prop_map(|at| Mutation::Delete { at }),
        ]
    }

    /// The JSON text after `mutations`; structural ones apply before the
    /// textual ones.
    fn mutate(mutations: &[Mutation], object_form: bool) -> String {
        let mut closure = valid_closure();
        for m in mutations {
            match *m {
                Mutation::Remove { entry, field } => {
                    closure[entry].as_object_mut().unwrap().remove(FIELDS[field]);
                }
                Mutation::Retype { entry, field, value } => {
                    let values = [json!(null), json!(7), json!(-1), json!("x"), json!(["x"]), json!({"x": 1})];
                    closure[entry][FIELDS[field]] = values[value].clone();
                }
                _ => {}
            }
        }
        if object_form {
            let mut by_path = serde_json::Map::new();
            for (i, mut entry) in closure.as_array().unwrap().clone().into_iter().enumerate() {
                let key = match entry.as_object_mut().unwrap().remove("path") {
                    Some(Value::String(p)) => p,
                    _ => format!("/nix/store/entry-{i}"),
                };
                by_path.insert(key, entry);
            }
            closure = Value::Object(by_path);
        }
        let mut bytes = serde_json::to_vec(&closure).unwrap();
        for m in mutations {
            match *m {
                Mutation::Flip { at, bits } => {
                    let at = at % bytes.len();
                    bytes[at] ^= bits;
                }
                Mutation::Insert { at, snippet } => {
                    let at = at % (bytes.len() + 1);
                    bytes.splice(at..at, SNIPPETS[snippet].bytes());
                }
                Mutation::Delete { at } if !bytes.is_empty() => {
                    bytes.remove(at % bytes.len());
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Renders `info` as a narinfo and reads it back, checking the keys.
    fn round_trip(info: &PathInfo) {
        let narinfo = NarInfo {
            info: info.clone(),
            url: format!("nar/{}.nar", info.nar_hash.nix32()),
            compression: Compression::None,
            file_hash: info.nar_hash,
            file_size: info.nar_size,
        };
        let text = narinfo.render().expect("a parsed path info always renders");
        let mut fields: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in text.strip_suffix('\n').unwrap().split('\n') {
            let (key, value) = line.split_once(": ").unwrap_or_else(|| panic!("line without ': ': {line:?}"));
            fields.entry(key).or_default().push(value);
        }
        let one = |key: &str| match fields.get(key).map(Vec::as_slice) {
            Some([value]) => *value,
            other => panic!("{key}: {other:?} in {text}"),
        };
        assert_eq!(one("StorePath"), info.path.as_str());
        assert_eq!(one("NarHash"), info.nar_hash.to_string());
        assert_eq!(one("NarSize"), info.nar_size.to_string());
        for key in ["URL", "Compression", "FileHash", "FileSize"] {
            one(key);
        }
        let references: Vec<StorePath> = match one("References") {
            "" => Vec::new(),
            refs => refs.split(' ').map(|r| StorePath::parse(STORE, &format!("{STORE}/{r}")).unwrap()).collect(),
        };
        assert_eq!(references, info.references);
        let deriver = fields.contains_key("Deriver").then(|| one("Deriver"));
        assert_eq!(deriver, info.deriver.as_ref().map(StorePath::base_name));
        let sigs: Vec<Signature> =
            fields.get("Sig").map_or(Vec::new(), |v| v.iter().map(|s| s.parse().unwrap()).collect());
        assert_eq!(sigs, info.signatures);
        let ca = fields.contains_key("CA").then(|| one("CA").parse::<ContentAddress>().unwrap());
        assert_eq!(ca, info.ca);
        let known = ["StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize", "References"];
        for key in fields.keys() {
            assert!(known.contains(key) || ["Deriver", "Sig", "CA"].contains(key), "unknown key {key:?}");
        }
    }

    #[test]
    fn the_unmutated_closure_round_trips() {
        for object_form in [false, true] {
            let infos = parse_path_info_json(&mutate(&[], object_form), STORE).unwrap();
            assert_eq!(infos.len(), 2);
            infos.iter().for_each(round_trip);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn mutated_closures_never_panic_and_what_parses_round_trips(
            mutations in proptest::collection::vec(mutation(), 1..4),
            object_form in any::<bool>(),
        ) {
            let json = mutate(&mutations, object_form);
            if let Ok(infos) = parse_path_info_json(&json, STORE) {
                infos.iter().for_each(round_trip);
            }
            let _ = Attrs::parse(&format!(r#"{{"closure":{json}}}"#), STORE);
        }
    }
}
