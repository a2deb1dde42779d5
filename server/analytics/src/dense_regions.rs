//! Dense regions among a sliding window of points, as DBSCAN finds them (Ester et al., 1996): a
//! point with at least `minimum` points (itself included) within `radius` is a core point; core
//! points within `radius` of each other share a region, and a point within `radius` of a core
//! point joins the first region that reaches it.
//!
//! The window keeps its points in a grid of `radius`-sided cells over the first three dimensions
//! and each point's count of neighbours, both updated as a point comes in and the oldest goes
//! out: a new row costs its own neighbours and the old row's, and a search walks only from core
//! points. Rebuilding both for every row cost about a millisecond at 1,000 points.

use std::collections::{HashMap, VecDeque};

/// A region: how many points it holds and their bounds in each dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub count: usize,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
}

/// How many leading dimensions the grid indexes (27 cells around a point at most).
const GRID_DIMENSIONS: usize = 3;
type Cell = [i64; GRID_DIMENSIONS];

#[derive(Debug, Clone)]
struct Point {
    values: Vec<f64>,
    cell: Cell,
    /// Points within the radius, itself included.
    neighbours: usize,
}

#[derive(Debug, Clone)]
pub struct PointWindow {
    radius: f64,
    capacity: usize,
    /// Ids in arrival order; an id is the point's arrival number.
    order: VecDeque<u64>,
    points: HashMap<u64, Point>,
    /// Ids by cell, in arrival order.
    grid: HashMap<Cell, Vec<u64>>,
    next_id: u64,
    offsets: Vec<Cell>,
}

impl PointWindow {
    /// A window of the last `capacity` points, searched within `radius`.
    pub fn new(radius: f64, capacity: usize, dimensions: usize) -> PointWindow {
        PointWindow {
            radius,
            capacity,
            order: VecDeque::new(),
            points: HashMap::new(),
            grid: HashMap::new(),
            next_id: 0,
            offsets: adjacent(dimensions.min(GRID_DIMENSIONS)),
        }
    }

    /// Takes a point in, and the oldest out once the window is full.
    pub fn push(&mut self, values: Vec<f64>) {
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.remove(oldest);
        }
        let id = self.next_id;
        self.next_id += 1;
        let cell = cell_of(&values, self.radius);
        let near = self.within_radius(&values, cell);
        for other in &near {
            if let Some(point) = self.points.get_mut(other) {
                point.neighbours += 1;
            }
        }
        self.points.insert(id, Point { values, cell, neighbours: near.len() + 1 });
        self.grid.entry(cell).or_default().push(id);
        self.order.push_back(id);
    }

    fn remove(&mut self, id: u64) {
        let Some(point) = self.points.remove(&id) else { return };
        if let Some(ids) = self.grid.get_mut(&point.cell) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.grid.remove(&point.cell);
            }
        }
        for other in self.within_radius(&point.values, point.cell) {
            if let Some(neighbour) = self.points.get_mut(&other) {
                neighbour.neighbours -= 1;
            }
        }
    }

    /// The ids of the window's points within the radius of `values` (in `cell`).
    fn within_radius(&self, values: &[f64], cell: Cell) -> Vec<u64> {
        let radius_squared = self.radius * self.radius;
        let mut found = Vec::new();
        for offset in &self.offsets {
            let key: Cell = std::array::from_fn(|d| cell[d].saturating_add(offset[d]));
            for id in self.grid.get(&key).into_iter().flatten() {
                if self.points.get(id).is_some_and(|p| distance_squared(values, &p.values) <= radius_squared) {
                    found.push(*id);
                }
            }
        }
        found
    }

    /// The points in arrival order (for a snapshot).
    pub fn points(&self) -> impl Iterator<Item = &Vec<f64>> {
        self.order.iter().filter_map(|id| self.points.get(id).map(|p| &p.values))
    }

    /// The regions of the window, in the order their first core point came.
    pub fn regions(&self, minimum: usize) -> Vec<Region> {
        let is_core = |id: &u64| self.points.get(id).is_some_and(|p| p.neighbours >= minimum);
        let mut region_of: HashMap<u64, usize> = HashMap::new();
        let mut regions = Vec::new();
        for seed in self.order.iter().filter(|id| is_core(id)) {
            if region_of.contains_key(seed) {
                continue;
            }
            let index = regions.len();
            let mut members = Vec::new();
            let mut queue = VecDeque::from([*seed]);
            region_of.insert(*seed, index);
            while let Some(id) = queue.pop_front() {
                members.push(id);
                let Some(point) = self.points.get(&id).filter(|_| is_core(&id)) else { continue };
                for next in self.within_radius(&point.values, point.cell) {
                    if let std::collections::hash_map::Entry::Vacant(slot) = region_of.entry(next) {
                        slot.insert(index);
                        queue.push_back(next);
                    }
                }
            }
            regions.push(self.bounds(&members));
        }
        regions
    }

    fn bounds(&self, members: &[u64]) -> Region {
        let mut min: Vec<f64> = Vec::new();
        let mut max: Vec<f64> = Vec::new();
        for point in members.iter().filter_map(|id| self.points.get(id)) {
            if min.is_empty() {
                min = point.values.clone();
                max = point.values.clone();
            }
            for (d, value) in point.values.iter().enumerate() {
                min[d] = min[d].min(*value);
                max[d] = max[d].max(*value);
            }
        }
        Region { count: members.len(), min, max }
    }
}

fn cell_of(values: &[f64], radius: f64) -> Cell {
    // `as` saturates: a coordinate beyond i64's range shares the edge cell, and the distance
    // check keeps the answer right. Dimensions past the point's own are 0.
    std::array::from_fn(|d| values.get(d).map_or(0, |v| (v / radius).floor() as i64))
}

/// Every offset of -1, 0 or 1 in each of the first `dimensions` dimensions (0 in the rest).
fn adjacent(dimensions: usize) -> Vec<Cell> {
    let mut offsets = vec![[0; GRID_DIMENSIONS]];
    for d in 0..dimensions {
        offsets = offsets
            .into_iter()
            .flat_map(|base| {
                (-1..=1).map(move |o| {
                    let mut next = base;
                    next[d] = o;
                    next
                })
            })
            .collect();
    }
    offsets
}

fn distance_squared(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_of(points: &[Vec<f64>], radius: f64) -> PointWindow {
        let mut window = PointWindow::new(radius, points.len().max(1), points.first().map_or(1, Vec::len));
        for point in points {
            window.push(point.clone());
        }
        window
    }

    fn square(x: f64, y: f64, side: usize, step: f64) -> Vec<Vec<f64>> {
        (0..side * side).map(|i| vec![x + (i % side) as f64 * step, y + (i / side) as f64 * step]).collect()
    }

    #[test]
    fn two_dense_squares_are_two_regions_and_lone_points_none() {
        let mut points = square(0.0, 0.0, 5, 0.1);
        points.extend(square(10.0, 10.0, 4, 0.1));
        points.extend([vec![5.0, 5.0], vec![-7.0, 3.0]]);
        let regions = window_of(&points, 0.15).regions(4);
        assert_eq!(regions.len(), 2, "{regions:?}");
        assert_eq!(regions[0], Region { count: 25, min: vec![0.0, 0.0], max: vec![0.4, 0.4] });
        assert_eq!(regions[1].count, 16);
        assert!((regions[1].max[0] - 10.3).abs() < 1e-9, "{regions:?}");
    }

    #[test]
    fn a_border_point_joins_the_region_but_does_not_extend_it() {
        // A line of points 0.1 apart: with a minimum of 3, the ends are border points.
        let mut points: Vec<Vec<f64>> = (0..6).map(|i| vec![i as f64 * 0.1]).collect();
        points.push(vec![0.5 + 0.15]);
        let regions = window_of(&points, 0.11).regions(3);
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].count, 6, "the point 0.15 past the last is nobody's neighbour: {regions:?}");
        assert_eq!(window_of(&points, 0.16).regions(3)[0].count, 7);
    }

    #[test]
    fn counts_kept_as_points_come_and_go_equal_counts_made_afresh() {
        // A fixed pseudo-random cloud in four dimensions (the grid indexes three of them).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1_000) as f64 / 100.0
        };
        let points: Vec<Vec<f64>> = (0..600).map(|_| (0..4).map(|_| next()).collect()).collect();
        let radius = 2.5;
        let mut sliding = PointWindow::new(radius, 200, 4);
        for point in &points {
            sliding.push(point.clone());
        }
        let last: Vec<&Vec<f64>> = points[400..].iter().collect();
        assert_eq!(sliding.points().collect::<Vec<_>>(), last);
        for id in &sliding.order {
            let point = &sliding.points[id];
            let every = last.iter().filter(|other| distance_squared(&point.values, other) <= radius * radius).count();
            assert_eq!(point.neighbours, every, "point {id}");
        }
        assert_eq!(sliding.regions(9), window_of(&points[400..], radius).regions(9));
    }

    #[test]
    fn huge_and_negative_coordinates_do_not_break_the_grid() {
        let points = vec![vec![f64::MAX, -1e300], vec![f64::MAX, -1e300], vec![-0.5, -0.5], vec![-0.45, -0.5]];
        let regions = window_of(&points, 0.1).regions(2);
        assert_eq!(regions.iter().map(|r| r.count).collect::<Vec<_>>(), vec![2, 2]);
    }
}
