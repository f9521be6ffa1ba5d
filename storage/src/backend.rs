//! The ordered key-value operations the log needs, so that one implementation of the log's
//! semantics (indexing, retention, history) runs on sled and in memory alike.

use std::collections::BTreeMap;

use crate::LogError;

/// The trees (ordered key spaces) of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tree {
    Records,
    BySeq,
    LastGood,
    Meta,
    Journal,
}

impl Tree {
    pub const ALL: [Tree; 5] = [
        Tree::Records,
        Tree::BySeq,
        Tree::LastGood,
        Tree::Meta,
        Tree::Journal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tree::Records => "records",
            Tree::BySeq => "by_seq",
            Tree::LastGood => "last_good",
            Tree::Meta => "meta",
            Tree::Journal => "journal",
        }
    }
}

pub type Entry = (Vec<u8>, Vec<u8>);
pub type Entries<'a> = Box<dyn Iterator<Item = Result<Entry, LogError>> + 'a>;

/// Ordered storage with named trees.
pub trait Backend: Send {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, LogError>;
    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), LogError>;
    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<(), LogError>;
    /// Inserts many entries at once (one sled batch per tree).
    fn insert_many(&mut self, tree: Tree, entries: &[Entry]) -> Result<(), LogError> {
        for (k, v) in entries {
            self.insert(tree, k, v)?;
        }
        Ok(())
    }
    /// Removes many keys at once (one sled batch).
    fn remove_many(&mut self, tree: Tree, keys: &[Vec<u8>]) -> Result<(), LogError> {
        for k in keys {
            self.remove(tree, k)?;
        }
        Ok(())
    }
    fn first(&self, tree: Tree) -> Result<Option<Entry>, LogError>;
    fn last(&self, tree: Tree) -> Result<Option<Entry>, LogError>;
    /// Entries whose key starts with `prefix`, in key order.
    fn scan_prefix<'a>(&'a self, tree: Tree, prefix: &[u8]) -> Entries<'a>;
    /// Entries with keys at or after `from`, in key order.
    fn scan_from<'a>(&'a self, tree: Tree, from: &[u8]) -> Entries<'a>;
    fn flush(&mut self) -> Result<(), LogError>;
}

/// Everything in memory; for tests and for simulations that keep no data directory.
#[derive(Debug, Default, Clone)]
pub struct MemBackend {
    trees: BTreeMap<Tree, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemBackend {
    fn tree(&self, tree: Tree) -> Option<&BTreeMap<Vec<u8>, Vec<u8>>> {
        self.trees.get(&tree)
    }

    fn tree_mut(&mut self, tree: Tree) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        self.trees.entry(tree).or_default()
    }
}

impl Backend for MemBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.tree(tree).and_then(|t| t.get(key).cloned()))
    }

    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), LogError> {
        self.tree_mut(tree).insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<(), LogError> {
        self.tree_mut(tree).remove(key);
        Ok(())
    }

    fn first(&self, tree: Tree) -> Result<Option<Entry>, LogError> {
        Ok(self
            .tree(tree)
            .and_then(|t| t.first_key_value())
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn last(&self, tree: Tree) -> Result<Option<Entry>, LogError> {
        Ok(self
            .tree(tree)
            .and_then(|t| t.last_key_value())
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn scan_prefix<'a>(&'a self, tree: Tree, prefix: &[u8]) -> Entries<'a> {
        let prefix = prefix.to_vec();
        match self.tree(tree) {
            None => Box::new(std::iter::empty()),
            Some(t) => Box::new(
                t.range(prefix.clone()..)
                    .take_while(move |(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| Ok((k.clone(), v.clone()))),
            ),
        }
    }

    fn scan_from<'a>(&'a self, tree: Tree, from: &[u8]) -> Entries<'a> {
        match self.tree(tree) {
            None => Box::new(std::iter::empty()),
            Some(t) => Box::new(
                t.range(from.to_vec()..)
                    .map(|(k, v)| Ok((k.clone(), v.clone()))),
            ),
        }
    }

    fn flush(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}

/// sled on disk: one sled tree per [`Tree`].
#[derive(Debug, Clone)]
pub struct SledBackend {
    db: sled::Db,
    trees: [sled::Tree; 5],
}

impl SledBackend {
    pub fn new(db: sled::Db) -> Result<Self, LogError> {
        let open = |t: Tree| db.open_tree(t.name());
        let trees = [
            open(Tree::Records)?,
            open(Tree::BySeq)?,
            open(Tree::LastGood)?,
            open(Tree::Meta)?,
            open(Tree::Journal)?,
        ];
        Ok(Self { db, trees })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree as usize]
    }

    /// Bytes sled uses on disk (all trees, including its own overhead).
    pub fn size_on_disk(&self) -> Result<u64, LogError> {
        Ok(self.db.size_on_disk()?)
    }
}

fn owned(r: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Entry, LogError> {
    r.map(|(k, v)| (k.to_vec(), v.to_vec()))
        .map_err(LogError::from)
}

impl Backend for SledBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.tree(tree).get(key)?.map(|v| v.to_vec()))
    }

    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), LogError> {
        self.tree(tree).insert(key, value)?;
        Ok(())
    }

    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<(), LogError> {
        self.tree(tree).remove(key)?;
        Ok(())
    }

    fn insert_many(&mut self, tree: Tree, entries: &[Entry]) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k.as_slice(), v.as_slice());
        }
        self.tree(tree).apply_batch(batch)?;
        Ok(())
    }

    fn remove_many(&mut self, tree: Tree, keys: &[Vec<u8>]) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k.as_slice());
        }
        self.tree(tree).apply_batch(batch)?;
        Ok(())
    }

    fn first(&self, tree: Tree) -> Result<Option<Entry>, LogError> {
        self.tree(tree).first()?.map(Ok).map(owned).transpose()
    }

    fn last(&self, tree: Tree) -> Result<Option<Entry>, LogError> {
        self.tree(tree).last()?.map(Ok).map(owned).transpose()
    }

    fn scan_prefix<'a>(&'a self, tree: Tree, prefix: &[u8]) -> Entries<'a> {
        Box::new(self.tree(tree).scan_prefix(prefix).map(owned))
    }

    fn scan_from<'a>(&'a self, tree: Tree, from: &[u8]) -> Entries<'a> {
        Box::new(self.tree(tree).range(from.to_vec()..).map(owned))
    }

    fn flush(&mut self) -> Result<(), LogError> {
        self.db.flush()?;
        Ok(())
    }
}
