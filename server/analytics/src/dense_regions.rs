//! Dense regions among points, as DBSCAN finds them (Ester et al., 1996): a point with at least
//! `minimum` points (itself included) within `radius` is a core point; core points within
//! `radius` of each other share a region, and a point within `radius` of a core point joins
//! the first region that reaches it. Neighbours are looked up in a grid of `radius`-sided
//! cells over the first three dimensions, so a search costs about the points times their
//! neighbours rather than the points squared.

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

/// The regions among `points` (all of one dimension), in the order their first core point comes.
pub fn find(points: &[Vec<f64>], radius: f64, minimum: usize) -> Vec<Region> {
    let neighbours = neighbour_lists(points, radius);
    let core: Vec<bool> = neighbours.iter().map(|n| n.len() >= minimum).collect();
    let mut region_of: Vec<Option<usize>> = vec![None; points.len()];
    let mut regions = Vec::new();
    for seed in 0..points.len() {
        if !core[seed] || region_of[seed].is_some() {
            continue;
        }
        let id = regions.len();
        let mut members = Vec::new();
        let mut queue = VecDeque::from([seed]);
        region_of[seed] = Some(id);
        while let Some(point) = queue.pop_front() {
            members.push(point);
            if !core[point] {
                continue;
            }
            for &next in &neighbours[point] {
                if region_of[next].is_none() {
                    region_of[next] = Some(id);
                    queue.push_back(next);
                }
            }
        }
        regions.push(bounds(points, &members));
    }
    regions
}

/// For each point, the points within `radius` of it (itself included).
fn neighbour_lists(points: &[Vec<f64>], radius: f64) -> Vec<Vec<usize>> {
    let mut grid: HashMap<Vec<i64>, Vec<usize>> = HashMap::new();
    for (index, point) in points.iter().enumerate() {
        grid.entry(cell(point, radius)).or_default().push(index);
    }
    let radius_squared = radius * radius;
    points
        .iter()
        .map(|point| {
            let home = cell(point, radius);
            let mut found = Vec::new();
            for offsets in adjacent(home.len()) {
                let key: Vec<i64> = home.iter().zip(&offsets).map(|(c, o)| c.saturating_add(*o)).collect();
                for &other in grid.get(&key).into_iter().flatten() {
                    if distance_squared(point, &points[other]) <= radius_squared {
                        found.push(other);
                    }
                }
            }
            found
        })
        .collect()
}

fn cell(point: &[f64], radius: f64) -> Vec<i64> {
    // `as` saturates: a coordinate beyond i64's range shares the edge cell, and the distance
    // check keeps the answer right.
    point.iter().take(GRID_DIMENSIONS).map(|v| (v / radius).floor() as i64).collect()
}

/// Every offset of -1, 0 or 1 in each of `dimensions` dimensions.
fn adjacent(dimensions: usize) -> Vec<Vec<i64>> {
    (0..dimensions).fold(vec![Vec::new()], |offsets, _| {
        offsets
            .into_iter()
            .flat_map(|prefix| {
                (-1..=1).map(move |o| {
                    let mut next = prefix.clone();
                    next.push(o);
                    next
                })
            })
            .collect()
    })
}

fn distance_squared(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn bounds(points: &[Vec<f64>], members: &[usize]) -> Region {
    let dimensions = points[members[0]].len();
    let mut min = vec![f64::INFINITY; dimensions];
    let mut max = vec![f64::NEG_INFINITY; dimensions];
    for &member in members {
        for (d, value) in points[member].iter().enumerate() {
            min[d] = min[d].min(*value);
            max[d] = max[d].max(*value);
        }
    }
    Region { count: members.len(), min, max }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f64, y: f64, side: usize, step: f64) -> Vec<Vec<f64>> {
        (0..side * side).map(|i| vec![x + (i % side) as f64 * step, y + (i / side) as f64 * step]).collect()
    }

    #[test]
    fn two_dense_squares_are_two_regions_and_lone_points_none() {
        let mut points = square(0.0, 0.0, 5, 0.1);
        points.extend(square(10.0, 10.0, 4, 0.1));
        points.extend([vec![5.0, 5.0], vec![-7.0, 3.0]]);
        let regions = find(&points, 0.15, 4);
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
        let regions = find(&points, 0.11, 3);
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].count, 6, "the point 0.15 past the last is nobody's neighbour: {regions:?}");
        let regions = find(&points, 0.16, 3);
        assert_eq!(regions[0].count, 7, "{regions:?}");
    }

    #[test]
    fn the_grid_finds_what_comparing_every_pair_finds() {
        // A fixed pseudo-random cloud in four dimensions (the grid indexes three of them).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1_000) as f64 / 100.0
        };
        let points: Vec<Vec<f64>> = (0..400).map(|_| (0..4).map(|_| next()).collect()).collect();
        let radius = 2.5;
        let by_grid = neighbour_lists(&points, radius);
        for (i, found) in by_grid.iter().enumerate() {
            let mut found = found.clone();
            found.sort_unstable();
            let every: Vec<usize> =
                (0..points.len()).filter(|&j| distance_squared(&points[i], &points[j]) <= radius * radius).collect();
            assert_eq!(found, every, "point {i}");
        }
    }

    #[test]
    fn huge_and_negative_coordinates_do_not_break_the_grid() {
        let points = vec![vec![f64::MAX, -1e300], vec![f64::MAX, -1e300], vec![-0.5, -0.5], vec![-0.45, -0.5]];
        let regions = find(&points, 0.1, 2);
        assert_eq!(regions.iter().map(|r| r.count).collect::<Vec<_>>(), vec![2, 2]);
    }
}
