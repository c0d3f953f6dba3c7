//! The one deny list of environment names that change how the loader, a shell or a
//! language runtime starts a program. Whoever can set one of these in a child's
//! environment runs code in it, so the store refuses to create them (unless the request
//! says `allow_dangerous_name`) and agent-run refuses to inject them from any source or
//! `--env` (unless `--allow-env NAME`). Sources: glibc's `unsecvars.h` (the names the
//! loader drops for setuid programs), sudo's `env_delete` defaults and each runtime's
//! documented start-up variables.

/// Names matched exactly, or as a prefix when the entry ends in `*`.
pub const DANGEROUS_NAMES: &[&str] = &[
    // The dynamic loader (glibc, musl) and glibc's own start-up: preload, search paths,
    // audit modules, charset-conversion modules, allocator tuning.
    "LD_*",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "MALLOC_*",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "NLSPATH",
    // macOS dyld.
    "DYLD_*",
    // Command lookup and the POSIX/bash shells: start-up files, options, the trace prompt
    // (expanded, so it runs commands), word splitting.
    "PATH",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "IFS",
    "CDPATH",
    "BASH_FUNC_*",
    // Node.js.
    "NODE_OPTIONS",
    "NODE_PATH",
    // Python.
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONINSPECT",
    "PYTHONUSERBASE",
    "PYTHONEXECUTABLE",
    "PYTHONWARNINGS",
    "PYTHONBREAKPOINT",
    // Perl.
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    // Ruby.
    "RUBYOPT",
    "RUBYLIB",
    // The JVM.
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
];

/// Whether `name` is on [`DANGEROUS_NAMES`] (case-sensitive, as the environment is).
pub fn is_dangerous(name: &str) -> bool {
    DANGEROUS_NAMES
        .iter()
        .any(|entry| match entry.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *entry,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_list_matches_exact_names_and_prefixes() {
        for name in [
            "PATH",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "NODE_OPTIONS",
            "DYLD_INSERT_LIBRARIES",
            "MALLOC_CHECK_",
            "BASH_FUNC_x%%",
            "GCONV_PATH",
        ] {
            assert!(is_dangerous(name), "{name}");
        }
        for name in [
            "PATHS",
            "MYPATH",
            "path",
            "OPENAI_API_KEY",
            "NODE_ENV",
            "LD",
        ] {
            assert!(!is_dangerous(name), "{name}");
        }
    }
}
