//! Shrink the page's wasm for its gzipped size (what a visitor downloads), in three steps that
//! change no behaviour:
//!
//! 1. Sort the functions by name. gzip (deflate) only matches repeats within the last 32 KiB;
//!    rustc emits the instantiations of one generic (`BTreeMap<K, V>::insert` for each `K, V`,
//!    nearly byte-identical) scattered over the 1.4 MB code section, out of each other's window.
//!    Sorted by name (without the `::h<hash>` suffix) they sit side by side: measured on the
//!    bundle, 426 -> 399 KB gzipped.
//! 2. Keep one copy of byte-identical functions of the same type (every reference to a copy
//!    goes to the one kept): about 2 KB gzipped.
//! 3. Drop the function-name section (about a fifth of the gzipped file; panics still carry
//!    their message) and the producers section.
//!
//! Why not binaryen's `wasm-opt`: Debian's (version 108) repoints wasm-bindgen's
//! `__wbindgen_externrefs` export from the externref table to the funcref table on any round
//! trip, even with no pass (the page then fails at load: "WebAssembly.Table.set(): Argument 1 is
//! invalid for table"); and its `-Oz`/`-Os`/`-O2` make this bundle 10 % smaller raw but 8 %
//! LARGER gzipped (inlining and function merging turn near-identical instantiations, which gzip
//! compresses well, into distinct code).
//!
//! The module is read with `wasmparser` and written back with `wasm-encoder`'s `Reencode`, which
//! renumbers every reference to a function (calls, `ref.func`, exports, element segments, the
//! start function) through [`Reorder::function_index`].

use wasm_encoder::reencode::{self, Reencode};

type Result<T = ()> = std::result::Result<T, String>;

/// The permutation: `new_index[old function index] = new function index` (imports keep theirs;
/// a dropped copy gets the index of the function kept), and `order[new local position] = old
/// local position` (kept functions only).
struct Reorder {
    new_index: Vec<u32>,
    order: Vec<usize>,
}

impl Reencode for Reorder {
    type Error = String;

    fn function_index(&mut self, func: u32) -> std::result::Result<u32, reencode::Error<String>> {
        self.new_index.get(func as usize).copied().ok_or_else(|| {
            reencode::Error::UserError(format!("function index {func} out of range"))
        })
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> std::result::Result<(), reencode::Error<String>> {
        let types = section
            .into_iter()
            .collect::<std::result::Result<Vec<u32>, _>>()?;
        let order = std::mem::take(&mut self.order);
        for &old in &order {
            let ty = self.type_index(types[old])?;
            functions.function(ty);
        }
        self.order = order;
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> std::result::Result<(), reencode::Error<String>> {
        let bodies = section
            .into_iter()
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let order = std::mem::take(&mut self.order);
        for &old in &order {
            self.parse_function_body(code, bodies[old].clone())?;
        }
        self.order = order;
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> std::result::Result<(), reencode::Error<String>> {
        if matches!(section.name(), "name" | "producers") {
            return Ok(());
        }
        reencode::utils::parse_custom_section(self, module, section)
    }
}

/// The module shrunk as the module docs say (functions sorted by name, identical copies dropped,
/// names and producers dropped). Errors: a sentence if the module cannot be read or rewritten.
pub fn shrink(wasm: &[u8]) -> Result<Vec<u8>> {
    let bad = |e: wasmparser::BinaryReaderError| format!("cannot read the wasm module: {e}");
    let mut imported = 0usize;
    let mut types: Vec<u32> = Vec::new();
    let mut bodies: Vec<std::ops::Range<usize>> = Vec::new();
    let mut names: Vec<(u32, String)> = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.map_err(bad)? {
            wasmparser::Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    if matches!(import.map_err(bad)?.ty, wasmparser::TypeRef::Func(_)) {
                        imported += 1;
                    }
                }
            }
            wasmparser::Payload::FunctionSection(s) => {
                types = s
                    .into_iter()
                    .collect::<std::result::Result<_, _>>()
                    .map_err(bad)?;
            }
            wasmparser::Payload::CodeSectionEntry(body) => bodies.push(body.range()),
            wasmparser::Payload::CustomSection(c) => {
                if let wasmparser::KnownCustom::Name(reader) = c.as_known() {
                    for sub in reader {
                        if let wasmparser::Name::Function(map) = sub.map_err(bad)? {
                            for naming in map {
                                let n = naming.map_err(bad)?;
                                names.push((n.index, n.name.to_string()));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let locals = types.len();
    if bodies.len() != locals {
        return Err(format!(
            "the wasm module declares {locals} functions but has {} bodies",
            bodies.len()
        ));
    }
    let mut key: Vec<String> = vec![String::new(); locals];
    for (index, name) in names {
        if let Some(k) = (index as usize)
            .checked_sub(imported)
            .and_then(|local| key.get_mut(local))
        {
            *k = strip_hash(&name).to_string();
        }
    }
    // The first function (in rustc's order) with each (type, body bytes); the others are copies.
    let mut first: std::collections::HashMap<(u32, &[u8]), usize> = Default::default();
    let kept_as: Vec<usize> = (0..locals)
        .map(|f| {
            *first
                .entry((types[f], &wasm[bodies[f].clone()]))
                .or_insert(f)
        })
        .collect();
    let mut order: Vec<usize> = (0..locals).filter(|&f| kept_as[f] == f).collect();
    // Stable: functions with the same name keep rustc's order.
    order.sort_by(|&a, &b| key[a].cmp(&key[b]));
    let mut position = vec![0u32; locals];
    for (new, &old) in order.iter().enumerate() {
        position[old] = (imported + new) as u32;
    }
    let new_index: Vec<u32> = (0..imported as u32)
        .chain((0..locals).map(|f| position[kept_as[f]]))
        .collect();
    let mut reorder = Reorder { new_index, order };
    let mut module = wasm_encoder::Module::new();
    reencode::utils::parse_core_module(&mut reorder, &mut module, wasmparser::Parser::new(0), wasm)
        .map_err(|e| format!("cannot rewrite the wasm module: {e:?}"))?;
    Ok(module.finish())
}

/// `path::to::f::h0123456789abcdef` -> `path::to::f` (rustc's legacy symbol hash).
fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_a_rustc_hash() {
        assert_eq!(strip_hash("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(strip_hash("a::b::hash"), "a::b::hash");
        assert_eq!(strip_hash("memcpy"), "memcpy");
    }

    /// Four functions named c, a, b, d (c calls d, d is a copy of a, the export names b): after
    /// shrinking, a, b, c; the call goes to a and the export follows b.
    #[test]
    fn sorts_by_name_merges_copies_and_renumbers_references() {
        use wasm_encoder::{
            CodeSection, ExportKind, ExportSection, Function, FunctionSection, IndirectNameMap,
            Instruction, Module, NameMap, NameSection, TypeSection,
        };
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], [wasm_encoder::ValType::I32]);
        module.section(&types);
        let mut funcs = FunctionSection::new();
        for _ in 0..4 {
            funcs.function(0);
        }
        module.section(&funcs);
        let mut exports = ExportSection::new();
        exports.export("b", ExportKind::Func, 2);
        module.section(&exports);
        let mut code = CodeSection::new();
        // 0 = "c": calls 3 ("d").
        let mut f = Function::new([]);
        f.instruction(&Instruction::Call(3));
        f.instruction(&Instruction::End);
        code.function(&f);
        for value in [10, 20, 10] {
            let mut f = Function::new([]);
            f.instruction(&Instruction::I32Const(value));
            f.instruction(&Instruction::End);
            code.function(&f);
        }
        module.section(&code);
        let mut names = NameSection::new();
        let mut map = NameMap::new();
        for (i, n) in ["c", "a", "b", "d"].iter().enumerate() {
            map.append(i as u32, &format!("{n}::h0123456789abcdef"));
        }
        names.functions(&map);
        names.locals(&IndirectNameMap::new());
        module.section(&names);
        let shrunk = shrink(&module.finish()).unwrap();
        wasmparser::Validator::new().validate_all(&shrunk).unwrap();

        let mut bodies = Vec::new();
        let mut export = None;
        for payload in wasmparser::Parser::new(0).parse_all(&shrunk) {
            match payload.unwrap() {
                wasmparser::Payload::CodeSectionEntry(body) => {
                    let ops: Vec<String> = body
                        .get_operators_reader()
                        .unwrap()
                        .into_iter()
                        .map(|op| format!("{:?}", op.unwrap()))
                        .collect();
                    bodies.push(ops.join(" "));
                }
                wasmparser::Payload::ExportSection(s) => {
                    export = Some(s.into_iter().next().unwrap().unwrap().index);
                }
                wasmparser::Payload::CustomSection(c) => {
                    assert_ne!(c.name(), "name", "the name section is dropped");
                }
                _ => {}
            }
        }
        assert_eq!(
            bodies,
            [
                "I32Const { value: 10 } End",
                "I32Const { value: 20 } End",
                "Call { function_index: 0 } End",
            ]
        );
        assert_eq!(export, Some(1), "the export still names b");
    }
}
