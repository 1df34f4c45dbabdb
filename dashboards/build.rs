//! Embeds every file of `panels/`: adding a panel is adding a file.

use std::fmt::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=panels");
    println!("cargo:rerun-if-changed=web");
    let mut names: Vec<String> = std::fs::read_dir("panels")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".toml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from(
        "/// Every panel file: (file name, text).\npub const PANEL_FILES: &[(&str, &str)] = &[\n",
    );
    for name in names {
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/panels/{name}\"))),"
        );
    }
    out.push_str("];\n");
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()))
        .join("panels.rs");
    if let Err(e) = std::fs::write(&path, out) {
        println!("cargo:warning=cannot write {}: {e}", path.display());
    }
}
