//! Values a variable may hold where a line uses it: what the line assigns (`f=x`, `for f in
//! a b`), what the step's `env` gives, and nothing for the rest (only known at run time).

use std::collections::{BTreeMap, HashMap};

use super::Script;
use super::word::{Atom, Word};

const MAX_EXPANSIONS: usize = 64;
/// Values a variable may hold where a line uses it.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: HashMap<String, Vec<Option<Word>>>,
}

const MAX_VAR_DEPTH: usize = 4;

impl Vars {
    /// The variables `script` sets and the step's environment `env` gives. A variable
    /// neither sets is only known at run time.
    pub fn new(script: &Script, env: &BTreeMap<String, String>) -> Self {
        let mut values: HashMap<String, Vec<Option<Word>>> = HashMap::new();
        for (k, v) in env {
            values
                .entry(k.clone())
                .or_default()
                .push(Some(Word::quoted(v)));
        }
        for a in &script.assigns {
            values
                .entry(a.name.clone())
                .or_default()
                .push(a.value.clone());
        }
        Self { values }
    }

    /// Every value `$name` may have, when all are known.
    fn known(&self, name: &str) -> Option<Vec<&Word>> {
        self.values.get(name)?.iter().map(Option::as_ref).collect()
    }

    /// The words `word` may become once the variables in it are replaced by the values they
    /// may hold (those only known at run time stay as they are).
    pub fn expand(&self, word: &Word) -> Vec<Word> {
        self.expand_atoms(&word.atoms, 0)
            .into_iter()
            .map(|atoms| Word { atoms })
            .collect()
    }

    /// The literal texts `word` may be, if all are known (a command name held in a
    /// variable: `c=curl; $c`).
    pub fn literals(&self, word: &Word) -> Option<Vec<String>> {
        self.expand(word).iter().map(Word::literal).collect()
    }

    fn expand_atoms(&self, atoms: &[Atom], depth: usize) -> Vec<Vec<Atom>> {
        let mut out: Vec<Vec<Atom>> = vec![Vec::new()];
        for a in atoms {
            let alts = match a {
                Atom::Param {
                    name,
                    quoted,
                    plain: true,
                    ..
                } if depth < MAX_VAR_DEPTH && name != "HOME" && name != "PWD" => {
                    match self.known(name) {
                        Some(vals) if !vals.is_empty() => {
                            let mut alts = Vec::new();
                            for v in vals {
                                let atoms: Vec<Atom> = v
                                    .atoms
                                    .iter()
                                    .map(|x| match x {
                                        Atom::Char { c, .. } => Atom::Char {
                                            c: *c,
                                            quoted: *quoted,
                                        },
                                        other => other.clone(),
                                    })
                                    .collect();
                                alts.extend(self.expand_atoms(&atoms, depth + 1));
                            }
                            alts
                        }
                        _ => vec![vec![a.clone()]],
                    }
                }
                other => vec![vec![other.clone()]],
            };
            if let [alt] = alts.as_slice() {
                // The common case (a plain character, an unknown variable): every word so far
                // grows by the same atoms; copying the words would make long ones quadratic.
                for o in &mut out {
                    o.extend(alt.iter().cloned());
                }
                continue;
            }
            if out.len() * alts.len() > MAX_EXPANSIONS {
                // Too many to follow: the variable stays unknown.
                for o in &mut out {
                    o.push(a.clone());
                }
                continue;
            }
            let mut next = Vec::with_capacity(out.len() * alts.len());
            for o in &out {
                for alt in &alts {
                    let mut v = o.clone();
                    v.extend(alt.iter().cloned());
                    next.push(v);
                }
            }
            out = next;
        }
        out
    }
}
