//! How a table is declared: columns with logical types, keys, partitioning.
//!
//! The logical types are deliberately few, and each maps to exactly the Arrow
//! type the Delta protocol round-trips (timestamps are microseconds in UTC,
//! maps and lists use Delta's field names), so what we write is what other
//! engines read back.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The logical type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Utf8,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// `true` / `false`.
    Boolean,
    /// An instant, microseconds since the epoch, UTC.
    Timestamp,
    /// A calendar day (UTC).
    Date,
    /// A string-to-string map (tags, labels, annotations).
    StringMap,
    /// A list of strings.
    StringList,
    /// A Backstage entity ref, stored canonical (`kind:namespace/name`,
    /// lower-case) as text. Input may omit the namespace, and the kind when
    /// the column implies one (the value given here).
    EntityRef(Option<&'static str>),
}

impl ColumnType {
    /// The Arrow type this column is stored as.
    pub fn arrow_type(self) -> DataType {
        match self {
            Self::Utf8 | Self::EntityRef(_) => DataType::Utf8,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Date => DataType::Date32,
            Self::StringMap => DataType::Map(Arc::new(map_entries_field()), false),
            Self::StringList => {
                DataType::List(Arc::new(Field::new(LIST_ITEM_FIELD, DataType::Utf8, true)))
            }
        }
    }

    /// The name printed in the data dictionary (SQL-ish, as analysts see it).
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::Utf8 => "text",
            Self::Int64 => "bigint",
            Self::Float64 => "double",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamp (UTC)",
            Self::Date => "date",
            Self::StringMap => "map<text, text>",
            Self::StringList => "list<text>",
            Self::EntityRef(_) => "text (entity ref)",
        }
    }
}

/// Field names Delta uses for lists and maps; Arrow data with other names
/// would not match the table's schema on write.
pub const LIST_ITEM_FIELD: &str = "element";
/// Name of a map's entries struct in Delta's Arrow mapping.
pub const MAP_ENTRIES_FIELD: &str = "key_value";
/// Name of a map's key field.
pub const MAP_KEY_FIELD: &str = "key";
/// Name of a map's value field.
pub const MAP_VALUE_FIELD: &str = "value";

/// The entries field of a `map<text, text>` column.
pub fn map_entries_field() -> Field {
    Field::new(
        MAP_ENTRIES_FIELD,
        DataType::Struct(Fields::from(vec![
            Field::new(MAP_KEY_FIELD, DataType::Utf8, false),
            Field::new(MAP_VALUE_FIELD, DataType::Utf8, true),
        ])),
        false,
    )
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    /// Column name, snake case, unit in the name (`_seconds`, `_usd`, `_at`).
    pub name: &'static str,
    /// Logical type.
    pub column_type: ColumnType,
    /// Whether the column may be null. Key columns never are.
    pub nullable: bool,
    /// What the column holds, for the data dictionary.
    pub description: &'static str,
    /// The values a text column accepts, when it is a closed list: input
    /// is normalised to them where rows enter, and an unknown value is
    /// quarantined, never guessed.
    pub vocabulary: Option<&'static Vocabulary>,
}

impl ColumnDef {
    /// The column, accepting only `vocabulary`'s values.
    pub const fn with_vocabulary(mut self, vocabulary: &'static Vocabulary) -> Self {
        self.vocabulary = Some(vocabulary);
        self
    }

    /// What the data dictionary says of it: its description, and its
    /// values when they are a closed list.
    pub fn documentation(&self) -> String {
        match self.vocabulary {
            None => self.description.to_owned(),
            Some(vocabulary) => format!("{} {}", self.description, vocabulary.describe()),
        }
    }
}

/// The closed list of values of a text column, and the spellings upstream
/// systems use for them (compared without case, `-`/space as `_`).
#[derive(Debug, Clone, Copy)]
pub struct Vocabulary {
    /// What one value is, for messages (`deployment status`).
    pub name: &'static str,
    /// The values stored.
    pub values: &'static [&'static str],
    /// (spelling, value) for every other spelling accepted.
    pub synonyms: &'static [(&'static str, &'static str)],
}

impl Vocabulary {
    /// The stored value `text` stands for, if any.
    pub fn normalise(&self, text: &str) -> Option<&'static str> {
        let key: String = text
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        self.values
            .iter()
            .copied()
            .find(|v| **v == key)
            .or_else(|| {
                self.synonyms
                    .iter()
                    .find(|(spelling, _)| *spelling == key)
                    .map(|(_, value)| *value)
            })
    }

    /// Why `text` was refused.
    pub fn refusal(&self, text: &str) -> String {
        format!(
            "`{text}` is not a {}: expected one of {}",
            self.name,
            self.describe_values()
        )
    }

    fn describe_values(&self) -> String {
        self.values
            .iter()
            .map(|v| {
                let others: Vec<&str> = self
                    .synonyms
                    .iter()
                    .filter(|(_, value)| value == v)
                    .map(|(spelling, _)| *spelling)
                    .collect();
                if others.is_empty() {
                    (*v).to_owned()
                } else {
                    format!("{v} (or {})", others.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The values and their accepted spellings, for the data dictionary.
    pub fn describe(&self) -> String {
        format!(
            "Values: {}; case is ignored, anything else is quarantined.",
            self.describe_values()
        )
    }
}

/// Monthly partitioning derived from an event-time column.
///
/// The partition column (`YYYY-MM` text) is computed on write from `source`;
/// input never has to supply it, and a value it does supply is recomputed, so
/// a row always lands in the partition of its own event time.
#[derive(Debug, Clone, Copy)]
pub struct MonthPartition {
    /// The derived partition column.
    pub column: &'static str,
    /// The non-null timestamp or date column it is derived from.
    pub source: &'static str,
}

/// A warehouse table: its name, columns, key and partitioning.
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    /// Table name as it appears in SQL.
    pub name: &'static str,
    /// What one row is, and where rows come from.
    pub description: &'static str,
    /// Columns in storage order (the partition column included).
    pub columns: &'static [ColumnDef],
    /// Columns whose values identify a row; merges match on them.
    pub primary_key: &'static [&'static str],
    /// How the table is partitioned, if at all.
    pub partition: Option<MonthPartition>,
}

impl TableDef {
    /// The Arrow schema of the table, partition column included.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.name, c.column_type.arrow_type(), c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Names of the partition columns (zero or one).
    pub fn partition_columns(&self) -> Vec<&'static str> {
        self.partition.iter().map(|p| p.column).collect()
    }

    /// Whether `column` is part of the primary key.
    pub fn is_key(&self, column: &str) -> bool {
        self.primary_key.contains(&column)
    }
}
