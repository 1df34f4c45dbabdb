//! A labelled table of changes: one row per deployment (or per change of a
//! CSV), its features, whether it failed, when it happened and whose it is.

/// Rows of features with their labels, times and groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Feature names.
    pub features: Vec<String>,
    /// One row per item, a value per feature; NaN where missing.
    pub values: Vec<Vec<f64>>,
    /// Whether each failed.
    pub labels: Vec<bool>,
    /// When each happened (seconds since the epoch): the backtest's order.
    pub times: Vec<i64>,
    /// An id per row (the deployment id).
    pub ids: Vec<String>,
    /// The group of each (the component), for "of this service" wording.
    pub groups: Vec<Option<String>>,
}

impl Frame {
    /// A frame whose rows are in time order already (time = row number).
    pub fn new(features: Vec<String>, values: Vec<Vec<f64>>, labels: Vec<bool>) -> Self {
        let n = values.len();
        Self {
            features,
            values,
            labels,
            times: (0..n as i64).collect(),
            ids: (0..n).map(|i| i.to_string()).collect(),
            groups: vec![None; n],
        }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Index of a feature.
    pub fn feature(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f == name)
    }

    /// The same rows with only the features at `columns`.
    pub fn select(&self, columns: &[usize]) -> Self {
        Self {
            features: columns.iter().map(|&c| self.features[c].clone()).collect(),
            values: self
                .values
                .iter()
                .map(|row| columns.iter().map(|&c| row[c]).collect())
                .collect(),
            labels: self.labels.clone(),
            times: self.times.clone(),
            ids: self.ids.clone(),
            groups: self.groups.clone(),
        }
    }

    /// Row indices in time order (ties by id, so the order is stable).
    pub fn chronological(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| {
            self.times[a]
                .cmp(&self.times[b])
                .then_with(|| self.ids[a].cmp(&self.ids[b]))
        });
        order
    }
}
