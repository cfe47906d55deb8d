//! A small, safe pickle machine for the `data.pkl` of PyTorch `torch.save` archives.
//!
//! It understands the binary opcodes of protocols 2 to 5 that state dicts and plain checkpoint
//! dicts use, and nothing that builds arbitrary objects (`INST`, `OBJ`, `NEWOBJ`, extensions).
//! `GLOBAL` is accepted only for the few names a state dict needs; every other name is refused
//! when it is read, before anything else happens. Calls (`REDUCE`) are interpreted here, never
//! executed: `OrderedDict()` makes a dict, `_rebuild_tensor_v2` records where a tensor's
//! data lies. Containers live in an arena and refer to each other by index, so cycles and deep
//! nesting cannot recurse or overflow the stack.

use std::collections::HashMap;
use std::rc::Rc;

mod scan;
mod torch;

pub(crate) use scan::check_lengths;

pub(crate) use torch::{Global, StorageRef, TensorRef};

/// A value on the machine's stack. Containers, storages and tensors are indices into the
/// [`Pickle`]'s arenas.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Object(usize),
    Global(Global),
    Storage(usize),
    Tensor(usize),
}

/// A container.
#[derive(Debug)]
pub(crate) enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
}

/// An insertion-ordered dict with hashable keys.
#[derive(Debug, Default)]
pub(crate) struct Dict {
    pub(crate) entries: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    None,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Vec<Key>),
}

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PickleError {
    /// A name outside the allowed few (`module.name`).
    Forbidden(String),
    /// Anything else, at a byte offset.
    Invalid { offset: usize, reason: String },
}

/// The result of running a pickle.
#[derive(Debug, Default)]
pub(crate) struct Pickle {
    pub(crate) objects: Vec<Object>,
    pub(crate) storages: Vec<StorageRef>,
    pub(crate) tensors: Vec<TensorRef>,
}

/// Runs `data`, returning the arenas and the unpickled value.
pub(crate) fn unpickle(data: &[u8]) -> Result<(Pickle, Value), PickleError> {
    Machine {
        data,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storage_index: HashMap::new(),
        out: Pickle::default(),
    }
    .run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storage_index: HashMap<Rc<str>, usize>,
    out: Pickle,
}

type Res<T> = Result<T, PickleError>;

/// The most values a dict key may hold (a tuple counts with its items).
const MAX_KEY_NODES: usize = 64;

/// The most dimensions a tensor may have (PyTorch's own limit).
const MAX_DIMS: usize = 64;

impl<'a> Machine<'a> {
    fn fail<T>(&self, reason: impl Into<String>) -> Res<T> {
        Err(PickleError::Invalid {
            offset: self.op_at,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let data = self.data;
        if data.len() - self.pos < n {
            return self.fail(format!(
                "it ends in the middle of an opcode (needs {n} more bytes): truncated"
            ));
        }
        let bytes = &data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn line(&mut self) -> Res<String> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.fail("a GLOBAL name is not terminated by a newline");
        };
        let Ok(text) = std::str::from_utf8(&rest[..end]) else {
            return self.fail("a GLOBAL name is not UTF-8");
        };
        let text = text.to_string();
        self.pos += end + 1;
        Ok(text)
    }

    fn pop(&mut self) -> Res<Value> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) {
            return self.fail("an opcode needs a value but the stack is empty");
        }
        Ok(self.stack.pop().unwrap_or(Value::None))
    }

    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return self.fail("an opcode needs a MARK but there is none");
        };
        Ok(self.stack.split_off(mark))
    }

    fn top_object(&mut self) -> Res<usize> {
        match self.stack.last() {
            Some(Value::Object(i))
                if self.stack.len() > self.marks.last().copied().unwrap_or(0) =>
            {
                Ok(*i)
            }
            _ => self.fail("an opcode needs a list or dict below its arguments"),
        }
    }

    fn new_object(&mut self, object: Object) -> Value {
        self.out.objects.push(object);
        Value::Object(self.out.objects.len() - 1)
    }

    fn string(&mut self, n: u64) -> Res<()> {
        let n = self.length(n)?;
        let bytes = self.take(n)?;
        let Ok(text) = std::str::from_utf8(bytes) else {
            return self.fail("a string is not valid UTF-8");
        };
        let text: Rc<str> = Rc::from(text);
        self.stack.push(Value::Str(text));
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> Res<()> {
        let n = self.length(n)?;
        let bytes: Rc<[u8]> = Rc::from(self.take(n)?);
        self.stack.push(Value::Bytes(bytes));
        Ok(())
    }

    fn length(&self, n: u64) -> Res<usize> {
        match usize::try_from(n) {
            Ok(n) if n <= self.data.len() - self.pos => Ok(n),
            _ => self.fail(format!(
                "a length of {n} bytes runs past the end of the pickle: truncated"
            )),
        }
    }

    fn memo_get(&mut self, index: u32) -> Res<()> {
        match self.memo.get(&index) {
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            None => self.fail(format!("memo entry {index} is read before it is written")),
        }
    }

    fn memo_put(&mut self, index: u32) -> Res<()> {
        let Some(top) = self.stack.last() else {
            return self.fail("nothing to memoize: the stack is empty");
        };
        self.memo.insert(index, top.clone());
        Ok(())
    }

    fn run(mut self) -> Res<(Pickle, Value)> {
        loop {
            self.op_at = self.pos;
            let [op] = self
                .array::<1>()
                .or_else(|_| self.fail("it ends without the STOP opcode: truncated"))?;
            match op {
                0x80 => {
                    let [proto] = self.array()?;
                    if proto > 5 {
                        return self.fail(format!("pickle protocol {proto} is not supported"));
                    }
                }
                0x95 => {
                    self.array::<8>()?; // FRAME: a length hint only.
                }
                b'.' => {
                    let value = self.pop()?;
                    return Ok((self.out, value));
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.pop()?;
                    self.stack.push(top.clone());
                    self.stack.push(top);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                b'K' => {
                    let [v] = self.array()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                0x8a => {
                    let [n] = self.array()?;
                    self.long(n.into())?;
                }
                0x8b => {
                    let n = u64::from(u32::from_le_bytes(self.array()?));
                    self.long(n)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.array()?);
                    self.string(n.into())?;
                }
                0x8c => {
                    let [n] = self.array()?;
                    self.string(n.into())?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.array()?);
                    self.string(n)?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.array()?);
                    self.bytes(n.into())?;
                }
                b'C' => {
                    let [n] = self.array()?;
                    self.bytes(n.into())?;
                }
                0x8e => {
                    let n = u64::from_le_bytes(self.array()?);
                    self.bytes(n)?;
                }
                b')' => {
                    let v = self.new_object(Object::Tuple(Vec::new()));
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.new_object(Object::Tuple(items));
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let v = self.new_object(Object::Tuple(items));
                    self.stack.push(v);
                }
                b']' => {
                    let v = self.new_object(Object::List(Vec::new()));
                    self.stack.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.new_object(Object::List(items));
                    self.stack.push(v);
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b'}' => {
                    let v = self.new_object(Object::Dict(Dict::default()));
                    self.stack.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let v = self.new_object(Object::Dict(Dict::default()));
                    self.stack.push(v);
                    self.set_items(items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'q' => {
                    let [i] = self.array()?;
                    self.memo_put(i.into())?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.array()?);
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                    self.memo_put(i)?;
                }
                b'h' => {
                    let [i] = self.array()?;
                    self.memo_get(i.into())?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.array()?);
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(&module, &name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return self.fail("STACK_GLOBAL needs two strings");
                    };
                    self.global(&module, &name)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let _state = self.pop()?;
                    match self.stack.last() {
                        // An OrderedDict's attributes (`_metadata`) and tensor state: not
                        // needed for the weights, so dropped.
                        Some(Value::Tensor(_)) => {}
                        Some(Value::Object(i))
                            if matches!(self.out.objects[*i], Object::Dict(_)) => {}
                        _ => return self.fail("BUILD applies state to something not a dict"),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                other => {
                    return self.fail(format!(
                        "opcode 0x{other:02x} is not accepted (only the opcodes of plain \
                         dicts, lists, tuples, numbers, strings and tensors are)"
                    ));
                }
            }
        }
    }

    fn long(&mut self, n: u64) -> Res<()> {
        let n = self.length(n)?;
        if n > 8 {
            return self.fail(format!("an integer of {n} bytes is too large"));
        }
        let bytes = self.take(n)?;
        let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut full = [fill; 8];
        full[..n].copy_from_slice(bytes);
        self.stack.push(Value::Int(i64::from_le_bytes(full)));
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Res<()> {
        match Global::resolve(module, name) {
            Some(g) => {
                self.stack.push(Value::Global(g));
                Ok(())
            }
            None => Err(PickleError::Forbidden(format!("{module}.{name}"))),
        }
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Res<()> {
        let i = self.top_object()?;
        match &mut self.out.objects[i] {
            Object::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => self.fail("APPEND to something not a list"),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Res<()> {
        if !items.len().is_multiple_of(2) {
            return self.fail("SETITEMS with an odd number of values");
        }
        let i = self.top_object()?;
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            let mut budget = MAX_KEY_NODES;
            let Some(key) = self.key(&k, &mut budget) else {
                return self.fail("a dict key is not a number, string or small tuple of them");
            };
            pairs.push((key, k, v));
        }
        let Object::Dict(dict) = &mut self.out.objects[i] else {
            return self.fail("SETITEM on something not a dict");
        };
        for (key, k, v) in pairs {
            match dict.index.get(&key) {
                Some(&at) => dict.entries[at].1 = v,
                None => {
                    dict.index.insert(key, dict.entries.len());
                    dict.entries.push((k, v));
                }
            }
        }
        Ok(())
    }

    /// The hashable form of a dict key; `budget` bounds the nodes visited (tuples of tuples
    /// could otherwise make hashing exponential).
    fn key(&self, value: &Value, budget: &mut usize) -> Option<Key> {
        *budget = budget.checked_sub(1)?;
        Some(match value {
            Value::None => Key::None,
            Value::Bool(b) => Key::Bool(*b),
            Value::Int(i) => Key::Int(*i),
            Value::Float(f) => Key::Float(f.to_bits()),
            Value::Str(s) => Key::Str(s.clone()),
            Value::Bytes(b) => Key::Bytes(b.clone()),
            Value::Object(i) => match &self.out.objects[*i] {
                Object::Tuple(items) => Key::Tuple(
                    items
                        .iter()
                        .map(|v| self.key(v, budget))
                        .collect::<Option<_>>()?,
                ),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn tuple(&self, value: &Value) -> Option<&[Value]> {
        match value {
            Value::Object(i) => match &self.out.objects[*i] {
                Object::Tuple(items) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    /// A tuple of at most [`MAX_DIMS`] integers.
    fn ints(&self, value: &Value) -> Option<Vec<i64>> {
        let items = self.tuple(value)?;
        if items.len() > MAX_DIMS {
            return None;
        }
        items
            .iter()
            .map(|v| match v {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
